/**
 * What one answer of /colab/remote/* means for the status item: data, "hide yourself", or a
 * problem to say in words. No JupyterLab imports: unit-tested on its own.
 */

import { IProblem } from './types';

/** The reasons (the body's `reason`) after which the item hides and stops polling. */
export const HIDING_REASONS = ['not_gateway_mode', 'no_extension'];

/**
 * - ok: a 200 with its JSON body.
 * - hidden: this JupyterLab has no remote to show (not in gateway mode, a plain gateway, or a
 *   server without the /colab/remote/* routes).
 * - remote: the remote (or the relay in front of it) did not answer: gone, unreachable, timeout.
 * - auth: the local Jupyter server refused this page's credentials.
 * - local: the local Jupyter server itself did not answer (stopped, network).
 * - error: anything else (a 500, a body that is not JSON).
 */
export type AnswerKind = 'ok' | 'hidden' | 'remote' | 'auth' | 'local' | 'error';

export interface IAnswer<T = unknown> {
  kind: AnswerKind;
  /** The HTTP status; 0 when no answer came. */
  status: number;
  body: T | null;
  /** The body's `reason` (e.g. remote_gone), or null. */
  reason: string | null;
  /** Short words for the status bar, e.g. "Remote gone"; '' for ok. */
  label: string;
  /** The whole message and its hint, for the panel and the tooltip. */
  message: string;
  hint: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The problem in an error body: its `error` object, else its `message`. */
function problemOf(body: unknown): IProblem | null {
  if (!isObject(body)) {
    return null;
  }
  const error = body.error;
  if (isObject(error)) {
    return {
      kind: text(error.kind),
      message: text(error.message) || text(body.message),
      hint: text(error.hint)
    };
  }
  const message = text(body.message);
  if (!message) {
    return null;
  }
  // The project's messages end with "Hint: ..."; split it off for the panel.
  const at = message.indexOf(' Hint: ');
  return at < 0
    ? { kind: '', message, hint: '' }
    : { kind: '', message: message.slice(0, at), hint: message.slice(at + 7) };
}

/** The label of a 502/503/504 from /colab/remote/*, by its reason. */
export function remoteLabel(reason: string | null): string {
  switch (reason) {
    case 'remote_gone':
      return 'Remote gone';
    case 'timeout':
      return 'Remote not answering';
    case 'no_tunnel':
    case 'no_upstream':
      return 'No tunnel';
    case 'forbidden':
      return 'Gateway refused the token';
    default:
      return 'Remote unreachable';
  }
}

/**
 * Interpret one answer. `status` is 0 when the request itself failed (no answer: the local
 * server is down); `body` is the parsed JSON or null when the body was not JSON.
 */
export function interpret<T>(status: number, body: unknown): IAnswer<T> {
  const reason = isObject(body) && typeof body.reason === 'string' ? body.reason : null;
  const problem = problemOf(body);
  const answer = (
    kind: AnswerKind,
    label: string,
    message: string,
    hint: string
  ): IAnswer<T> => ({
    kind,
    status,
    body: kind === 'ok' ? (body as T) : null,
    reason,
    label,
    message: problem?.message || message,
    hint: problem?.hint || hint
  });
  if (status === 0) {
    return answer(
      'local',
      'Jupyter server unreachable',
      'The local Jupyter server did not answer.',
      'Check that the jupyter lab process still runs, then reload this page.'
    );
  }
  if (status === 200) {
    if (!isObject(body)) {
      return answer('error', 'Bad answer', 'The local server answered 200 without a JSON object.', '');
    }
    return { kind: 'ok', status, body: body as T, reason: null, label: '', message: '', hint: '' };
  }
  if (status === 404 && (reason === null || HIDING_REASONS.includes(reason))) {
    // reason null: a 404 page, not ours: a server without the /colab/remote/* routes.
    return answer('hidden', '', 'No remote to show here.', '');
  }
  if (status === 401 || status === 403) {
    return answer(
      'auth',
      'Not authorized',
      'The local Jupyter server refused this page\'s credentials.',
      'Log in to JupyterLab again (reload the page with its token).'
    );
  }
  if (status === 502 || status === 503 || status === 504) {
    return answer(
      'remote',
      remoteLabel(reason),
      'The remote did not answer.',
      'Check the relay (jupyter colab-tunnel connect) and the remote runtime.'
    );
  }
  return answer('error', `Error ${status}`, `The local server answered ${status}.`, '');
}
