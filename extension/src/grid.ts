import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { ICell, IGridPage, requestAPI } from './api';
import { button, h, select } from './dom';
import {
  IGridState,
  defaultGridState,
  formatCost,
  formatScore,
  gridQuery,
  pageCount,
  parseMetricFilter
} from './logic';

/**
 * A run's side-by-side grid in the main area: one row per case, the variants side by side, with the
 * notebook grid's filters (search, errors only, score bounds, variants), sort (a variant's score, or its
 * difference from the baseline) and paging. Only the visible page comes from the server.
 */
export class GridPanel extends Widget {
  constructor(
    readonly ws: string,
    readonly runId: string,
    private _settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super();
    this.addClass('jp-llmops-grid');
    this.id = `jp-llmops-grid-${runId}`;
    this.title.label = `Run ${runId.slice(0, 10)}`;
    this.title.closable = true;
    this._controls = h('div', { class: 'jp-llmops-grid-controls' });
    this._pager = h('div', { class: 'jp-llmops-grid-pager' });
    this._table = h('div', { class: 'jp-llmops-grid-table' });
    this._message = h('div', { class: 'jp-llmops-grid-message' });
    this.node.append(this._controls, this._pager, this._message, this._table);
    void this.load();
  }

  get state(): IGridState {
    return this._state;
  }

  async load(): Promise<void> {
    const seq = ++this._seq;
    try {
      const page = await requestAPI<IGridPage>(
        `runs/${encodeURIComponent(this.runId)}/grid?` +
          gridQuery(this.ws, this._state),
        this._settings
      );
      if (seq !== this._seq) {
        return; // a newer request is on its way
      }
      this._page = page;
      this._message.textContent = '';
      this._render();
    } catch (e) {
      this._message.textContent = `⚠ ${String((e as Error).message ?? e)}`;
    }
  }

  /** Change the view state and reload (page back to 0 unless only the page moved). */
  update_(patch: Partial<IGridState>): void {
    const onlyPage = Object.keys(patch).every(k => k === 'page');
    this._state = { ...this._state, ...patch, page: onlyPage ? (patch.page ?? 0) : 0 };
    void this.load();
  }

  private _render(): void {
    const p = this._page as IGridPage;
    if (!this._controlsBuilt) {
      this._buildControls(p);
    }
    const pages = pageCount(p.total, p.page_size);
    this._pager.replaceChildren(
      button('◀', () => this.update_({ page: Math.max(0, p.page - 1) }), {
        class: 'jp-llmops-button jp-llmops-prev',
        disabled: p.page <= 0
      }),
      h(
        'span',
        { class: 'jp-llmops-page-label' },
        `Page ${p.page + 1} of ${pages} · ${p.total} cases`
      ),
      button('▶', () => this.update_({ page: Math.min(pages - 1, p.page + 1) }), {
        class: 'jp-llmops-button jp-llmops-next',
        disabled: p.page + 1 >= pages
      })
    );
    const inputCols = p.input_columns;
    const head = h(
      'tr',
      {},
      h('th', { class: 'jp-llmops-case-col' }, 'case'),
      p.variants.map(v =>
        h('th', {}, v, v === p.baseline ? h('span', { class: 'jp-llmops-baseline' }, ' baseline') : null)
      )
    );
    const body = p.rows.map(r =>
      h(
        'tr',
        { 'data-case': r.case_id },
        h(
          'td',
          { class: 'jp-llmops-case-col' },
          h('div', { class: 'jp-llmops-case-id' }, r.case_id),
          inputCols
            .filter(c => String(r.inputs[c] ?? '') !== r.case_id) // the id column is shown above
            .slice(0, 2)
            .map(c =>
              h('div', { class: 'jp-llmops-input', title: `${c}: ${String(r.inputs[c] ?? '')}` }, clip(String(r.inputs[c] ?? ''), 180))
            )
        ),
        p.variants.map(v => this._cell(r.cells[v], p.metrics))
      )
    );
    this._table.replaceChildren(h('table', {}, h('thead', {}, head), h('tbody', {}, body)));
  }

  private _cell(c: ICell | null, metrics: string[]): HTMLElement {
    if (!c) {
      return h('td', { class: 'jp-llmops-pending' }, 'not run yet');
    }
    const scores = metrics.map(m => {
      const d = c.delta?.[m];
      return h(
        'span',
        { class: 'jp-llmops-score' },
        `${m} ${formatScore(c.scores[m])}`,
        d !== undefined
          ? h('span', { class: d > 0 ? 'jp-llmops-up' : d < 0 ? 'jp-llmops-down' : '' }, ` (${d >= 0 ? '+' : ''}${d.toFixed(3)})`)
          : null
      );
    });
    return h(
      'td',
      { class: c.error ? 'jp-llmops-cell jp-llmops-cell-error' : 'jp-llmops-cell' },
      c.error
        ? h('div', { class: 'jp-llmops-error' }, clip(c.error, 200))
        : h('div', { class: 'jp-llmops-output', title: c.output ?? '' }, clip(c.output ?? '', 300)),
      h('div', { class: 'jp-llmops-scores' }, scores),
      h(
        'div',
        { class: 'jp-llmops-cellmeta' },
        `${c.latency_ms !== null ? Math.round(c.latency_ms) + ' ms' : ''} · ${formatCost(c.cost)}${c.cached ? ' · cached' : ''}`
      )
    );
  }

  private _buildControls(p: IGridPage): void {
    this._controlsBuilt = true;
    const search = h('input', {
      class: 'jp-llmops-search',
      placeholder: 'search inputs and outputs',
      type: 'search'
    }) as HTMLInputElement;
    search.addEventListener('change', () => this.update_({ search: search.value }));
    const filter = h('input', {
      class: 'jp-llmops-metric-filter',
      placeholder: 'score filter: token_f1 < 0.5 or token_f1@variant < 0.5',
      type: 'text'
    }) as HTMLInputElement;
    filter.addEventListener('change', () => {
      const parts = filter.value.split(/[,;]/).filter(s => s.trim());
      const parsed = parts.map(parseMetricFilter);
      const bad = parsed.some(x => x === null);
      filter.classList.toggle('jp-llmops-invalid', bad);
      if (!bad) {
        this.update_({ metricFilters: parsed as any });
      }
    });
    const errors = h('input', { type: 'checkbox', class: 'jp-llmops-errors-only' }) as HTMLInputElement;
    errors.addEventListener('change', () => this.update_({ errorsOnly: errors.checked }));
    const metricOpts: [string, string][] = [['', 'dataset order'], ...p.metrics.map(m => [m, m] as [string, string]), ['latency_ms', 'latency'], ['cost', 'cost']];
    const variantOpts: [string, string][] = p.all_variants.map(v => [v, v]);
    const desc = h('input', { type: 'checkbox', class: 'jp-llmops-desc' }) as HTMLInputElement;
    desc.checked = this._state.descending;
    desc.addEventListener('change', () => this.update_({ descending: desc.checked }));
    this._controls.replaceChildren(
      search,
      filter,
      h('label', {}, errors, ' errors only'),
      h('label', {}, 'sort ', select(metricOpts, '', v => this.update_({ sortMetric: v || null }), { class: 'jp-llmops-select jp-llmops-sort' })),
      h('label', {}, 'of ', select(variantOpts, p.all_variants[0] ?? '', v => this.update_({ sortVariant: v }), { class: 'jp-llmops-select jp-llmops-sort-variant' })),
      h('label', {}, desc, ' desc'),
      h('label', {}, 'baseline ', select([['', 'none'], ...variantOpts], '', v => this.update_({ baseline: v || null }), { class: 'jp-llmops-select jp-llmops-baseline-select' })),
      h('label', {}, 'rows ', select([['10', '10'], ['25', '25'], ['50', '50'], ['100', '100']], String(this._state.pageSize), v => this.update_({ pageSize: Number(v) }), { class: 'jp-llmops-select jp-llmops-page-size' }))
    );
  }

  private _state: IGridState = defaultGridState();
  private _page: IGridPage | null = null;
  private _seq = 0;
  private _controlsBuilt = false;
  private _controls: HTMLElement;
  private _pager: HTMLElement;
  private _table: HTMLElement;
  private _message: HTMLElement;
}

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

/** A prompt diff between two versions in the main area. */
export class DiffPanel extends Widget {
  constructor(
    readonly ws: string,
    readonly name: string,
    readonly a: number,
    readonly b: number,
    settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
    lineClass: (line: string) => string
  ) {
    super();
    this.addClass('jp-llmops-diff');
    this.id = `jp-llmops-diff-${name}-${a}-${b}`;
    this.title.label = `${name} v${a}→v${b}`;
    this.title.closable = true;
    const qs = new URLSearchParams({ ws, name, a: String(a), b: String(b) });
    requestAPI<{ diff: string }>('prompts/diff?' + qs.toString(), settings).then(
      res => {
        const lines = res.diff ? res.diff.split('\n') : ['(no difference)'];
        this.node.replaceChildren(
          h('h3', {}, `Prompt ${name}: v${a} → v${b}`),
          h('pre', { class: 'jp-llmops-diff-body' }, lines.map(l => h('div', { class: lineClass(l) }, l || ' ')))
        );
      },
      e => {
        this.node.textContent = `⚠ ${String((e as Error).message ?? e)}`;
      }
    );
  }
}
