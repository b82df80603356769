/**
 * The status item and its panel: Lumino widgets that put the views of view.ts into the DOM, as
 * text only (textContent: nothing the remote sends is ever parsed as HTML).
 */

import { Widget } from '@lumino/widgets';

import { IItemView, ISection, Tone } from './view';

const TONES: Tone[] = ['good', 'busy', 'bad', 'none'];

function setTone(node: HTMLElement, prefix: string, tone: Tone): void {
  for (const t of TONES) {
    node.classList.toggle(`${prefix}-${t}`, t === tone);
  }
}

/** The status bar's item: one line of text, a button that opens the panel. */
export class RemoteItem extends Widget {
  private readonly dot: HTMLElement;
  private readonly label: HTMLElement;

  constructor(onActivate: () => void) {
    super();
    this.id = 'jp-colab-remote-item';
    this.addClass('jp-ColabRemote-item');
    this.node.setAttribute('role', 'button');
    this.node.setAttribute('tabindex', '0');
    this.node.setAttribute('aria-haspopup', 'dialog');
    this.dot = document.createElement('span');
    this.dot.className = 'jp-ColabRemote-dot';
    this.dot.setAttribute('aria-hidden', 'true');
    this.label = document.createElement('span');
    this.label.className = 'jp-ColabRemote-text';
    this.node.append(this.dot, this.label);
    this.node.addEventListener('click', onActivate);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onActivate();
      }
    });
  }

  render(view: IItemView): void {
    this.label.textContent = view.text;
    this.node.title = view.title;
    this.node.setAttribute('aria-label', view.title);
    setTone(this.node, 'jp-ColabRemote', view.tone);
  }
}

/** The panel: one table per section (GPUs, tunnel, runtime, relay). */
export class RemotePanel extends Widget {
  constructor() {
    super();
    this.id = 'jp-colab-remote-panel';
    this.addClass('jp-ColabRemote-panel');
    this.node.setAttribute('role', 'dialog');
    this.node.setAttribute('aria-label', 'Colab remote');
  }

  render(sections: ISection[]): void {
    const children: HTMLElement[] = [];
    for (const section of sections) {
      const heading = document.createElement('h3');
      heading.className = 'jp-ColabRemote-heading';
      heading.textContent = section.title;
      const table = document.createElement('table');
      table.className = 'jp-ColabRemote-table';
      table.setAttribute('aria-label', section.title);
      for (const row of section.rows) {
        const tr = document.createElement('tr');
        const th = document.createElement('th');
        th.scope = 'row';
        th.textContent = row.label;
        const td = document.createElement('td');
        td.textContent = row.value;
        if (row.tone) {
          setTone(td, 'jp-ColabRemote', row.tone);
        }
        tr.append(th, td);
        table.append(tr);
      }
      children.push(heading, table);
    }
    if (children.length === 0) {
      const p = document.createElement('p');
      p.textContent = 'Waiting for the first answer from the remote.';
      children.push(p);
    }
    this.node.replaceChildren(...children);
  }
}
