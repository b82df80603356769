/**
 * jupyter-colab-tunnel's JupyterLab extension: a status-bar item with the remote's GPU, tunnel
 * and remaining life, read from the local server's /colab/remote/* (Jupyter's own auth: the
 * browser never holds a remote or relay token). It hides itself where there is no remote.
 */

import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar, Popup, showPopup } from '@jupyterlab/statusbar';
import { Signal } from '@lumino/signaling';

import { IAnswer, interpret } from './answers';
import { Endpoint, IRemoteState, RemotePoller } from './poller';
import { IContext, itemView, panelView } from './view';
import { RemoteItem, RemotePanel } from './widgets';

const PLUGIN_ID = 'jupyter-colab-tunnel:status-item';

/** One GET of colab/remote/<endpoint> on the local server; never throws. */
function getter(settings: ServerConnection.ISettings): (e: Endpoint) => Promise<IAnswer> {
  return async endpoint => {
    const url = URLExt.join(settings.baseUrl, 'colab/remote', endpoint);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { method: 'GET' }, settings);
    } catch {
      return interpret(0, null);
    }
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return interpret(response.status, body);
  };
}

/** The kernel id of the current widget's session (a notebook or a console), if any. */
function currentKernelId(app: JupyterFrontEnd): string | null {
  const widget = app.shell.currentWidget as
    | { sessionContext?: { session?: { kernel?: { id?: string } | null } | null } }
    | null;
  return widget?.sessionContext?.session?.kernel?.id ?? null;
}

/** Notebook paths by kernel id, from the local sessions (gateway mode: the remote's kernels). */
function sessionPaths(app: JupyterFrontEnd): Map<string, string> {
  const paths = new Map<string, string>();
  for (const session of app.serviceManager.sessions.running()) {
    if (session.kernel?.id) {
      paths.set(session.kernel.id, session.path);
    }
  }
  return paths;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: "The remote GPU, tunnel and runtime life in JupyterLab's status bar.",
  autoStart: true,
  requires: [IStatusBar],
  optional: [ILabShell],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar, labShell: ILabShell | null) => {
    // A popup disposes of its body when it closes: each opening gets a new panel.
    let popup: Popup | null = null;
    let panel: RemotePanel | null = null;
    // Shown from the first answer that says there is a remote (no flash where there is none).
    let shown = false;
    const context = (): IContext => ({
      kernelId: currentKernelId(app),
      paths: sessionPaths(app),
      now: Date.now()
    });
    const render = (state: IRemoteState): void => {
      const ctx = context();
      item.render(itemView(state, ctx));
      if (popup && panel && !popup.isDisposed) {
        panel.render(panelView(state, ctx));
        popup.update();
      }
    };
    const toggle = (): void => {
      if (popup && !popup.isDisposed) {
        popup.dispose();
        popup = null;
        return;
      }
      panel = new RemotePanel();
      panel.render(panelView(poller.state, context()));
      popup = showPopup({ body: panel, anchor: item, align: 'left', hasDynamicSize: true });
      poller.refresh(); // status and relay now, not at the next slow poll
    };
    const item = new RemoteItem(toggle);
    const activeStateChanged = new Signal<RemoteItem, void>(item);
    const poller = new RemotePoller({
      get: getter(ServerConnection.makeSettings()),
      visibility: {
        hidden: () => document.hidden,
        onChange: listener => {
          document.addEventListener('visibilitychange', listener);
          return () => document.removeEventListener('visibilitychange', listener);
        }
      },
      onUpdate: state => {
        // What the item knows, for people debugging it and for the browser test.
        item.node.dataset.remote = state.hidden ? 'hidden' : (state.problem?.kind ?? 'ok');
        if (state.hidden) {
          popup?.dispose();
          activeStateChanged.emit();
          return;
        }
        render(state);
        if (!shown) {
          shown = true;
          activeStateChanged.emit();
        }
      }
    });
    item.render(itemView(poller.state, context()));
    statusBar.registerStatusItem(PLUGIN_ID, {
      item,
      align: 'left',
      rank: 100,
      isActive: () => shown && !poller.state.hidden,
      activeStateChanged
    });
    // Another notebook in front may use another GPU: show its one without waiting for a poll.
    labShell?.currentChanged.connect(() => render(poller.state));
    poller.start();
  }
};

export default plugin;
