import { ServerConnection } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import {
  IDataset,
  IPage,
  IPrompt,
  IRun,
  IWorkspace,
  q,
  requestAPI
} from './api';
import { button, h, select, shortTime } from './dom';
import { Backoff, formatCost, formatProgress, formatScore } from './logic';

export interface ISidebarActions {
  openRun(ws: string, runId: string): void;
  openDiff(ws: string, name: string, a: number, b: number): void;
}

/**
 * The "LLMOps" left sidebar: the workspaces under the server root and, for the chosen one, its datasets,
 * prompts (with a version diff), retrievers and runs (status, progress, created, cells, cost, leaderboard).
 * It polls the workspace's change stamp (no database open) and reloads only when it moved.
 */
export class LLMOpsSidebar extends Widget {
  /** Emitted with the workspace id whenever its contents changed (grid panels reload on it). */
  readonly changed = new Signal<this, string>(this);

  constructor(
    private _actions: ISidebarActions,
    private _settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super();
    this.id = 'jp-llmops-sidebar';
    this.addClass('jp-llmops-sidebar');
    this.title.caption = 'LLMOps';
    this._header = h('div', { class: 'jp-llmops-header' });
    this._body = h('div', { class: 'jp-llmops-body' });
    this._status = h('div', { class: 'jp-llmops-status' });
    this.node.append(this._header, this._body, this._status);
    void this.refresh(true);
  }

  get workspace(): string | null {
    return this._ws;
  }

  get workspaces(): IWorkspace[] {
    return this._workspaces;
  }

  get runs(): IRun[] {
    return this._runs;
  }

  /** Choose a workspace (by id relative to the server root) and load it. */
  async openWorkspace(ws: string): Promise<void> {
    this._ws = ws;
    this._stamp = '';
    this._openBoards.clear();
    await this.refresh(true);
  }

  /** Reload the workspace list and, if the stamp moved (or `force`), the chosen workspace. */
  async refresh(force = false): Promise<void> {
    clearTimeout(this._timer);
    let changed = false;
    try {
      const res = await requestAPI<{ items: IWorkspace[] }>(
        'workspaces',
        this._settings
      );
      this._workspaces = res.items;
      if (!this._ws || !res.items.some(w => w.id === this._ws)) {
        this._ws = res.items.length ? res.items[0].id : null;
      }
      const current = res.items.find(w => w.id === this._ws);
      if (current && (force || current.stamp !== this._stamp)) {
        await this._load(current.id);
        this._stamp = current.stamp;
        changed = true;
        this.changed.emit(current.id);
      }
      this._renderHeader();
      if (!current) {
        this._renderEmpty();
      }
      this._error = null;
    } catch (e) {
      this._error = String((e as Error).message ?? e);
    }
    this._renderStatus();
    this._schedule(changed);
  }

  /** The cheap poll: only the stamp; a full reload when it changed. */
  private async _poll(): Promise<void> {
    if (!this._ws) {
      return this.refresh();
    }
    try {
      const { stamp } = await requestAPI<{ stamp: string }>(
        'stamp?' + q(this._ws),
        this._settings
      );
      if (stamp !== this._stamp) {
        return this.refresh();
      }
      this._schedule(false);
    } catch (e) {
      this._error = String((e as Error).message ?? e);
      this._renderStatus();
      this._timer = window.setTimeout(
        () => void this._poll(),
        this._backoff.failed()
      );
    }
  }

  private _schedule(changed: boolean): void {
    clearTimeout(this._timer);
    if (this.isDisposed) {
      return;
    }
    const running = this._runs.some(
      r => r.status === 'running' || r.status === 'created'
    );
    const delay = this._error
      ? this._backoff.failed()
      : this._backoff.next(changed, running, document.hidden);
    this._timer = window.setTimeout(() => void this._poll(), delay);
  }

  dispose(): void {
    clearTimeout(this._timer);
    super.dispose();
  }

  private async _load(ws: string): Promise<void> {
    const s = this._settings;
    // one request, one read-only database open on the server
    const { datasets, prompts, retrievers: retr, runs } = await requestAPI<{
      datasets: IPage<IDataset>;
      prompts: IPage<IPrompt>;
      retrievers: { corpora: any[]; retrievers: any[] };
      runs: IPage<IRun>;
    }>('overview?' + q(ws, { limit: 200 }), s);
    this._runs = runs.items;
    const boards = await Promise.all(
      [...this._openBoards].map(id =>
        requestAPI<{ items: any[] }>(
          `runs/${encodeURIComponent(id)}/leaderboard?` + q(ws),
          s
        ).then(
          b => [id, b.items] as [string, any[]],
          () => [id, []] as [string, any[]]
        )
      )
    );
    this._boards = new Map(boards);
    this._renderBody(datasets, prompts, retr, runs);
  }

  private _renderHeader(): void {
    const options: [string, string][] = this._workspaces.map(w => [
      w.id,
      w.name
    ]);
    this._header.replaceChildren(
      h('div', { class: 'jp-llmops-title' }, 'LLMOps'),
      options.length
        ? select(options, this._ws ?? '', v => void this.openWorkspace(v), {
            title: 'Workspace',
            class: 'jp-llmops-select jp-llmops-ws'
          })
        : h('span', {}, ''),
      button('⟳', () => void this.refresh(true), {
        title: 'Refresh',
        class: 'jp-llmops-button jp-llmops-refresh'
      })
    );
  }

  private _renderEmpty(): void {
    this._body.replaceChildren(
      h(
        'p',
        { class: 'jp-llmops-empty' },
        'No workspace under the server root. Create one from a notebook with ',
        h('code', {}, 'import workbench as wb; wb.open()'),
        ' (a .llmops folder), then refresh.'
      )
    );
  }

  private _section(title: string, count: number, ...content: Node[]): Node {
    const d = h(
      'details',
      { class: 'jp-llmops-section', 'data-section': title.toLowerCase() },
      h('summary', {}, `${title} (${count})`),
      ...content
    ) as HTMLDetailsElement;
    d.open = this._openSections.has(title);
    d.addEventListener('toggle', () => {
      if (d.open) {
        this._openSections.add(title);
      } else {
        this._openSections.delete(title);
      }
    });
    return d;
  }

  private _renderBody(
    datasets: IPage<IDataset>,
    prompts: IPage<IPrompt>,
    retr: { corpora: any[]; retrievers: any[] },
    runs: IPage<IRun>
  ): void {
    const ws = this._ws as string;
    const dsList = h(
      'ul',
      { class: 'jp-llmops-list' },
      datasets.items.map(d =>
        h(
          'li',
          {},
          h('b', {}, d.name),
          ` v${d.version} · ${d.n_cases} rows · ${d.hash.slice(0, 8)}`
        )
      )
    );
    // prompts grouped by name, with a diff between two versions
    const byName = new Map<string, IPrompt[]>();
    for (const p of prompts.items) {
      byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
    }
    const promptList = h(
      'ul',
      { class: 'jp-llmops-list' },
      [...byName.entries()].map(([name, versions]) => {
        const vs = versions.map(v => v.version);
        const li = h(
          'li',
          { 'data-prompt': name },
          h('b', {}, name),
          ` ${vs.length} version${vs.length > 1 ? 's' : ''}`
        );
        if (vs.length > 1) {
          let a = vs[vs.length - 2];
          let b = vs[vs.length - 1];
          const opts: [string, string][] = vs.map(v => [String(v), `v${v}`]);
          li.append(
            h(
              'div',
              { class: 'jp-llmops-diffctl' },
              select(opts, String(a), v => (a = Number(v)), {
                class: 'jp-llmops-select jp-llmops-diff-a'
              }),
              ' → ',
              select(opts, String(b), v => (b = Number(v)), {
                class: 'jp-llmops-select jp-llmops-diff-b'
              }),
              button('Diff', () => this._actions.openDiff(ws, name, a, b), {
                class: 'jp-llmops-button jp-llmops-diff-open'
              })
            )
          );
        }
        return li;
      })
    );
    const retrList = h(
      'ul',
      { class: 'jp-llmops-list' },
      retr.retrievers.map(r =>
        h(
          'li',
          {},
          h('b', {}, r.name),
          ` retriever · ${r.runs} run(s) · ${String(r.hash).slice(0, 8)}`
        )
      ),
      retr.corpora.map(c =>
        h('li', {}, h('b', {}, c.name), ` corpus v${c.version} · ${c.n_docs} docs`)
      )
    );
    const runList = h(
      'ul',
      { class: 'jp-llmops-list jp-llmops-runs' },
      runs.items.map(r => this._runItem(ws, r))
    );
    const more =
      runs.total > runs.items.length
        ? h('p', { class: 'jp-llmops-more' }, `${runs.total - runs.items.length} older runs not shown`)
        : null;
    if (!this._openSections.size) {
      this._openSections.add('Runs');
    }
    this._body.replaceChildren(
      this._section('Datasets', datasets.total, dsList),
      this._section('Prompts', prompts.total, promptList),
      this._section('Retrievers', retr.retrievers.length + retr.corpora.length, retrList),
      this._section('Runs', runs.total, runList, ...(more ? [more] : []))
    );
  }

  private _runItem(ws: string, r: IRun): HTMLElement {
    const pct = r.n_cells ? Math.min(100, (100 * r.done) / r.n_cells) : 0;
    const li = h(
      'li',
      { class: 'jp-llmops-run', 'data-run': r.run_id, 'data-status': r.status },
      h(
        'div',
        { class: 'jp-llmops-run-head' },
        h('span', { class: `jp-llmops-badge jp-llmops-${r.status}` }, r.status),
        h('b', { title: r.run_id }, r.name || r.run_id.slice(0, 12)),
        button('Grid', () => this._actions.openRun(ws, r.run_id), {
          class: 'jp-llmops-button jp-llmops-open-run',
          title: 'Open the side-by-side grid'
        }),
        button('Board', () => this._toggleBoard(r.run_id), {
          class: 'jp-llmops-button jp-llmops-board-toggle',
          title: 'Show the leaderboard'
        })
      ),
      h(
        'div',
        { class: 'jp-llmops-progress', title: `${pct.toFixed(0)}%` },
        h('div', { class: 'jp-llmops-bar', style: `width:${pct}%` })
      ),
      h(
        'div',
        { class: 'jp-llmops-run-meta' },
        `${r.dataset_name} · ${shortTime(r.created_at)} · cells ${formatProgress(r.done, r.n_cells)}` +
          `${r.failed ? ` · ${r.failed} failed` : ''} · ${formatCost(r.cost)}`
      )
    );
    const board = this._boards.get(r.run_id);
    if (board) {
      li.append(h('div', { class: 'jp-llmops-board-wrap' }, this._boardTable(board)));
    }
    return li;
  }

  private _boardTable(rows: any[]): HTMLElement {
    if (!rows.length) {
      return h('div', { class: 'jp-llmops-empty' }, 'no variants');
    }
    // the narrow sidebar shows the metric means, errors and cost; the row's tooltip has every figure
    const skip = new Set(['n', 'tokens', 'cached', 'cost_per_1k', 'latency_p50_ms', 'latency_p95_ms']);
    const cols = Object.keys(rows[0]).filter(c => !skip.has(c));
    return h(
      'table',
      { class: 'jp-llmops-board' },
      h('tr', {}, cols.map(c => h('th', {}, c.replace(/_/g, ' ')))),
      rows.map(row =>
        h(
          'tr',
          {
            title: Object.entries(row)
              .map(([k, v]) => `${k}: ${v}`)
              .join('\n')
          },
          cols.map(c => {
            const v = row[c];
            const text =
              typeof v === 'number'
                ? c.startsWith('cost')
                  ? formatCost(v)
                  : Number.isInteger(v)
                    ? String(v)
                    : formatScore(v)
                : v === null
                  ? '–'
                  : String(v);
            return h('td', { title: String(v) }, text);
          })
        )
      )
    );
  }

  private async _toggleBoard(runId: string): Promise<void> {
    if (this._openBoards.has(runId)) {
      this._openBoards.delete(runId);
    } else {
      this._openBoards.add(runId);
    }
    if (this._ws) {
      await this._load(this._ws);
    }
  }

  private _renderStatus(): void {
    this._status.textContent = this._error
      ? `⚠ ${this._error} (retrying)`
      : this._ws
        ? `updated ${new Date().toLocaleTimeString()}`
        : '';
    this._status.classList.toggle('jp-llmops-error', !!this._error);
  }

  private _ws: string | null = null;
  private _stamp = '';
  private _workspaces: IWorkspace[] = [];
  private _runs: IRun[] = [];
  private _boards = new Map<string, any[]>();
  private _openBoards = new Set<string>();
  private _openSections = new Set<string>();
  private _error: string | null = null;
  private _timer = 0;
  private _backoff = new Backoff(1000, 30000);
  private _header: HTMLElement;
  private _body: HTMLElement;
  private _status: HTMLElement;
}
