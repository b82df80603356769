import { interpret, remoteLabel } from '../answers';

function problem(reason: string, message: string, hint: string): unknown {
  return {
    message: `${message} Hint: ${hint}`,
    reason,
    error: { kind: reason, message, hint }
  };
}

describe('interpret', () => {
  it('takes a 200 JSON object as data', () => {
    const a = interpret(200, { state: 'ready' });
    expect(a.kind).toBe('ok');
    expect(a.body).toEqual({ state: 'ready' });
  });

  it('a 200 that is not a JSON object is an error', () => {
    expect(interpret(200, null).kind).toBe('error');
    expect(interpret(200, [1]).kind).toBe('error');
  });

  it.each(['not_gateway_mode', 'no_extension'])('hides on a 404 %s', reason => {
    const a = interpret(404, problem(reason, 'Not in gateway mode.', 'Start with --gateway-url.'));
    expect(a.kind).toBe('hidden');
    expect(a.reason).toBe(reason);
  });

  it('hides on a 404 that is not ours (a server without /colab/remote/*)', () => {
    expect(interpret(404, null).kind).toBe('hidden');
    expect(interpret(404, { message: 'Not Found', reason: null }).kind).toBe('hidden');
  });

  it('does not hide on a 404 not_a_relay (the relay endpoint only)', () => {
    const a = interpret(404, problem('not_a_relay', 'The gateway is no relay.', 'Use connect.'));
    expect(a.kind).toBe('error');
    expect(a.reason).toBe('not_a_relay');
  });

  it('says the remote is gone, with the message and hint of the body', () => {
    const a = interpret(
      503,
      problem('remote_gone', 'The remote runtime has ended.', 'Start a new runtime.')
    );
    expect(a.kind).toBe('remote');
    expect(a.label).toBe('Remote gone');
    expect(a.message).toBe('The remote runtime has ended.');
    expect(a.hint).toBe('Start a new runtime.');
  });

  it.each([
    [502, 'bad_gateway', 'Remote unreachable'],
    [502, 'remote_unreachable', 'Remote unreachable'],
    [504, 'timeout', 'Remote not answering'],
    [503, 'no_tunnel', 'No tunnel'],
    [502, null, 'Remote unreachable']
  ])('%d %s -> %s', (status, reason, label) => {
    const body = reason === null ? null : problem(reason, 'x.', 'y.');
    const a = interpret(status, body);
    expect(a.kind).toBe('remote');
    expect(a.label).toBe(label);
    expect(a.hint).not.toBe('');
  });

  it('splits a message-only body at its Hint', () => {
    const a = interpret(502, { message: 'No answer. Hint: start the relay.', reason: 'bad_gateway' });
    expect(a.message).toBe('No answer.');
    expect(a.hint).toBe('start the relay.');
  });

  it.each([401, 403])('%d is a local auth problem', status => {
    const a = interpret(status, { message: 'Forbidden', reason: null });
    expect(a.kind).toBe('auth');
    expect(a.label).toBe('Not authorized');
  });

  it('no answer at all is the local server', () => {
    const a = interpret(0, null);
    expect(a.kind).toBe('local');
    expect(a.label).toBe('Jupyter server unreachable');
    expect(a.hint).toMatch(/reload/);
  });

  it('anything else is an error with its status', () => {
    const a = interpret(500, { message: 'boom', reason: null });
    expect(a.kind).toBe('error');
    expect(a.label).toBe('Error 500');
    expect(a.message).toBe('boom');
  });

  it('labels remote reasons', () => {
    expect(remoteLabel('remote_gone')).toBe('Remote gone');
    expect(remoteLabel('anything')).toBe('Remote unreachable');
  });
});
