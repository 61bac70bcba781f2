import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { IGridPage, IGridRow, IMetricInfo, IRepeat, IText, requestAPI } from './api';
import { button, h, select } from './dom';
import {
  IViewState,
  SHOW_OPTIONS,
  SORT_OPTIONS,
  formatCost,
  formatGridScore,
  formatMs,
  gridQuery,
  nextState,
  rowsLabel,
  scoreDelta
} from './logic';

/**
 * A run's side-by-side grid in the main area: one row per case, the variants side by side. It is the
 * notebook EvalGrid's view over HTTP: the same view state (show, failure threshold, disagreement, text or
 * regex search, sort by metric / delta / latency / cost, baseline, word diff, page) goes to the server,
 * which answers with `GridQuery.page` (workbench.gridview): only the visible page, in the widget's row shape.
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

  /** The view state last used by the server (defaults filled in), or the one asked for before the first page. */
  get state(): Partial<IViewState> {
    return this._state;
  }

  async load(): Promise<void> {
    const seq = ++this._seq;
    try {
      const page = await requestAPI<IGridPage>(
        `runs/${encodeURIComponent(this.runId)}/grid?` + gridQuery(this.ws, this._state),
        this._settings
      );
      if (seq !== this._seq) {
        return; // a newer request is on its way
      }
      this._page = page;
      this._state = page.state;
      this._message.textContent = '';
      this._render();
    } catch (e) {
      if (seq === this._seq) {
        this._message.textContent = `⚠ ${String((e as Error).message ?? e)}`;
      }
    }
  }

  /** Change the view state and reload (back to the first page when the rows change). */
  update_(patch: Partial<IViewState>): void {
    this._state = nextState(this._state, patch);
    void this.load();
  }

  private _render(): void {
    const p = this._page as IGridPage;
    const controlsKey = JSON.stringify({ ...p.state, page: 0 });
    if (controlsKey !== this._controlsKey) {
      this._controlsKey = controlsKey;
      this._buildControls(p);
    }
    const s = p.state;
    this._pager.replaceChildren(
      button('◀', () => this.update_({ page: Math.max(0, p.page - 1) }), {
        class: 'jp-llmops-button jp-llmops-prev',
        disabled: p.page <= 0
      }),
      h('span', { class: 'jp-llmops-page-label' }, `Page ${p.page + 1} of ${p.pages} · ${p.total} cases`),
      button('▶', () => this.update_({ page: Math.min(p.pages - 1, p.page + 1) }), {
        class: 'jp-llmops-button jp-llmops-next',
        disabled: p.page + 1 >= p.pages
      }),
      h('span', { class: 'jp-llmops-rows-label' }, rowsLabel(p.page, s.page_size, p.total, p.n_cases)),
      ...p.runs
        .filter(r => r.status !== 'completed' || r.stored < r.cells)
        .map(r => h('span', { class: 'jp-llmops-run-state' }, `run ${r.status}, ${r.stored}/${r.cells} cells`))
    );
    const keys = p.columns.map(c => c.key);
    const info = new Map(p.metrics.map(m => [m.name, m]));
    const head = h(
      'tr',
      {},
      h('th', { class: 'jp-llmops-case-col' }, 'case'),
      s.expected_column ? h('th', { class: 'jp-llmops-expected-col' }, `${s.expected_column} (expected)`) : null,
      keys.map(k =>
        h('th', {}, k, k === s.baseline ? h('span', { class: 'jp-llmops-baseline' }, ' baseline') : null)
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
          s.input_columns.map(c => inputView(c, r.inputs[c]))
        ),
        s.expected_column ? h('td', { class: 'jp-llmops-expected' }, textView(r.expected, 'jp-llmops-input')) : null,
        keys.map(k => this._cell(r, k, s.baseline, p, info))
      )
    );
    if (!p.rows.length) {
      body.push(
        h('tr', {}, h('td', { class: 'jp-llmops-empty', colspan: 1 + keys.length }, 'No rows match these filters.'))
      );
    }
    this._table.replaceChildren(h('table', {}, h('thead', {}, head), h('tbody', {}, body)));
  }

  private _cell(
    row: IGridRow,
    key: string,
    baseline: string,
    p: IGridPage,
    info: Map<string, IMetricInfo>
  ): HTMLElement {
    const cell = row.cells[key];
    if (!cell || !cell.repeats.length) {
      return h('td', { class: 'jp-llmops-pending' }, p.live ? 'pending…' : 'no result');
    }
    const base = baseline && key !== baseline ? row.cells[baseline]?.repeats : undefined;
    const errors = cell.repeats.some(r => r.error);
    return h(
      'td',
      { class: errors ? 'jp-llmops-cell jp-llmops-cell-error' : 'jp-llmops-cell', 'data-column': key },
      cell.repeats.map((rep, i) =>
        this._repeat(rep, base?.[Math.min(i, base.length - 1)], cell.repeats.length, p.metric_names, info)
      )
    );
  }

  private _repeat(
    rep: IRepeat,
    base: IRepeat | undefined,
    n: number,
    metrics: string[],
    info: Map<string, IMetricInfo>
  ): HTMLElement {
    const scores = metrics
      .filter(m => m in rep.scores || m in rep.score_errors)
      .map(m => {
        const v = rep.scores[m];
        const d = base ? scoreDelta(v, base.scores[m], info.get(m)?.higher_is_better ?? true) : null;
        const err = rep.score_errors[m];
        return h(
          'span',
          { class: 'jp-llmops-score', 'data-metric': m, title: err ? `${m}: ${err}` : `${m} = ${v ?? 'no score'}` },
          `${m} ${err ? 'error' : formatGridScore(v)}`,
          d ? h('span', { class: `jp-llmops-delta jp-llmops-${d.trend}` }, ` ${d.text}`) : null
        );
      });
    const meta = [
      formatMs(rep.latency_ms),
      rep.cost !== null ? formatCost(rep.cost) : null,
      rep.tokens !== null ? `${rep.tokens} tok` : null,
      rep.cached ? 'cached' : null
    ].filter(Boolean);
    let output: HTMLElement;
    if (rep.error) {
      output = h('div', { class: 'jp-llmops-error', title: rep.error_kind ?? '' }, 'error: ', clip(rep.error, 300));
    } else if (!rep.output) {
      output = h('div', { class: 'jp-llmops-pending' }, '(empty output)');
    } else if (rep.diff) {
      output = h(
        'div',
        { class: 'jp-llmops-output' },
        rep.diff.map(([seg, changed]) => (changed ? h('mark', { class: 'jp-llmops-diff-mark' }, seg) : seg)),
        rep.cut ? h('span', { class: 'jp-llmops-cut' }, ` … (${rep.cut} more chars)`) : null
      );
    } else {
      output = textView({ text: rep.output, cut: rep.cut }, 'jp-llmops-output');
    }
    return h(
      'div',
      { class: 'jp-llmops-repeat' },
      n > 1 ? h('div', { class: 'jp-llmops-repeat-label' }, `repeat ${rep.repeat + 1}/${n}`) : null,
      output,
      h('div', { class: 'jp-llmops-scores' }, scores),
      h('div', { class: 'jp-llmops-cellmeta' }, meta.join(' · ')),
      rep.chunks.length
        ? h(
            'details',
            { class: 'jp-llmops-chunks' },
            h('summary', {}, `${rep.chunks.length} chunks`),
            rep.chunks.map(c =>
              h(
                'div',
                { class: 'jp-llmops-chunk' },
                h('b', {}, c.id),
                c.doc_id ? ` doc ${c.doc_id}` : '',
                c.score !== null ? ` · score ${formatGridScore(c.score)}` : '',
                h('div', {}, clip(c.text ?? '', 400))
              )
            )
          )
        : null
    );
  }

  private _buildControls(p: IGridPage): void {
    const s = p.state;
    const metricOpts: [string, string][] = p.metric_names.map(m => [m, m]);
    const colOpts: [string, string][] = p.columns.map(c => [c.key, c.key]);
    const num = (value: number, name: keyof IViewState, cls: string): HTMLInputElement => {
      const i = h('input', { type: 'number', step: 'any', class: `jp-llmops-number ${cls}`, value: String(value) });
      const el = i as HTMLInputElement;
      el.addEventListener('change', () => {
        const v = Number(el.value);
        el.classList.toggle('jp-llmops-invalid', el.value.trim() === '' || !isFinite(v));
        if (el.value.trim() !== '' && isFinite(v)) {
          this.update_({ [name]: v } as Partial<IViewState>);
        }
      });
      return el;
    };
    const check = (value: boolean, name: keyof IViewState, cls: string): HTMLInputElement => {
      const c = h('input', { type: 'checkbox', class: cls }) as HTMLInputElement;
      c.checked = value;
      c.addEventListener('change', () => this.update_({ [name]: c.checked } as Partial<IViewState>));
      return c;
    };
    const search = h('input', {
      class: 'jp-llmops-search',
      placeholder: s.search_regex ? 'regex over inputs and outputs' : 'search inputs and outputs',
      type: 'search',
      value: s.search
    }) as HTMLInputElement;
    search.addEventListener('change', () => this.update_({ search: search.value }));

    const row1: (HTMLElement | null)[] = [
      h(
        'label',
        {},
        'show ',
        select(SHOW_OPTIONS, s.show, v => this.update_({ show: v }), { class: 'jp-llmops-select jp-llmops-show' })
      )
    ];
    if (s.show === 'failures' || s.show === 'passes') {
      row1.push(
        h(
          'label',
          {},
          'where ',
          select(metricOpts, s.failure_metric, v => this.update_({ failure_metric: v }), {
            class: 'jp-llmops-select jp-llmops-failure-metric'
          })
        ),
        select(
          [
            ['<', 'below'],
            ['>', 'above']
          ],
          s.failure_op,
          v => this.update_({ failure_op: v }),
          { class: 'jp-llmops-select jp-llmops-failure-op', title: 'a cell fails when its score is below / above' }
        ),
        num(s.failure_threshold, 'failure_threshold', 'jp-llmops-failure-threshold')
      );
    }
    if (s.show === 'disagree') {
      row1.push(
        h(
          'label',
          {},
          'on ',
          select([['', 'output text'], ...metricOpts], s.disagree_metric, v => this.update_({ disagree_metric: v }), {
            class: 'jp-llmops-select jp-llmops-disagree-metric'
          })
        ),
        s.disagree_metric
          ? h('label', {}, 'spread > ', num(s.disagree_spread, 'disagree_spread', 'jp-llmops-disagree-spread'))
          : null
      );
    }
    row1.push(
      search,
      h('label', {}, check(s.search_regex, 'search_regex', 'jp-llmops-regex'), ' regex'),
      h(
        'label',
        {},
        'feedback ',
        select(
          [
            ['any', 'any'],
            ['has', 'rated'],
            ['none', 'not rated']
          ],
          s.feedback,
          v => this.update_({ feedback: v }),
          { class: 'jp-llmops-select jp-llmops-feedback' }
        )
      )
    );

    const row2: (HTMLElement | null)[] = [
      h(
        'label',
        {},
        'sort ',
        select(SORT_OPTIONS, s.sort_by, v => this.update_({ sort_by: v }), { class: 'jp-llmops-select jp-llmops-sort' })
      )
    ];
    if (['metric', 'delta', 'disagreement'].includes(s.sort_by)) {
      const items = s.sort_by === 'disagreement' ? [['', 'output text'] as [string, string], ...metricOpts] : metricOpts;
      row2.push(
        select(items, s.sort_metric, v => this.update_({ sort_metric: v }), {
          class: 'jp-llmops-select jp-llmops-sort-metric'
        })
      );
    }
    if (s.sort_by === 'metric' || s.sort_by === 'delta') {
      const first: [string, string] = ['', s.sort_by === 'metric' ? 'mean of variants' : 'mean of others'];
      row2.push(
        h(
          'label',
          {},
          'of ',
          select([first, ...colOpts], s.sort_column, v => this.update_({ sort_column: v }), {
            class: 'jp-llmops-select jp-llmops-sort-column'
          })
        )
      );
    }
    row2.push(
      h('label', {}, check(s.sort_desc, 'sort_desc', 'jp-llmops-desc'), ' desc'),
      h(
        'label',
        {},
        'baseline ',
        select([['', 'none'], ...colOpts], s.baseline, v => this.update_({ baseline: v }), {
          class: 'jp-llmops-select jp-llmops-baseline-select'
        })
      ),
      h(
        'label',
        {},
        'diff ',
        select(
          [
            ['off', 'off'],
            ['baseline', 'vs baseline'],
            ...(s.expected_column ? [['expected', 'vs expected'] as [string, string]] : [])
          ],
          s.diff,
          v => this.update_({ diff: v }),
          { class: 'jp-llmops-select jp-llmops-diff-select' }
        )
      ),
      h(
        'label',
        {},
        'rows ',
        select(
          [...new Set([10, 25, 50, 100, s.page_size])].sort((a, b) => a - b).map(n => [String(n), String(n)]),
          String(s.page_size),
          v => this.update_({ page_size: Number(v) }),
          { class: 'jp-llmops-select jp-llmops-page-size' }
        )
      )
    );
    this._controls.replaceChildren(
      h('div', { class: 'jp-llmops-controls-row' }, row1),
      h('div', { class: 'jp-llmops-controls-row' }, row2)
    );
  }

  // the sidebar's grid opens with 25 rows a page; every other setting starts at the notebook grid's default
  private _state: Partial<IViewState> = { page: 0, page_size: 25 };
  private _page: IGridPage | null = null;
  private _seq = 0;
  private _controlsKey = '';
  private _controls: HTMLElement;
  private _pager: HTMLElement;
  private _table: HTMLElement;
  private _message: HTMLElement;
}

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

/**
 * A text clipped to `limit` characters with a "more" link that shows all the page carries (the server sends
 * up to 3,000 characters of a field and says how many it left out).
 */
function expandable(text: string, limit: number, cut: number): (HTMLElement | string)[] {
  const rest = cut ? h('span', { class: 'jp-llmops-cut' }, ` … (${cut} more chars not sent)`) : null;
  if (text.length <= limit) {
    return rest ? [text, rest] : [text];
  }
  const body = h('span', {}, clip(text, limit));
  const more = h('button', { class: 'jp-llmops-link jp-llmops-more-text' }, 'more');
  more.addEventListener('click', e => {
    e.stopPropagation();
    const open = more.textContent === 'less';
    body.textContent = open ? clip(text, limit) : text;
    more.textContent = open ? 'more' : 'less';
    if (rest) {
      rest.hidden = open;
    }
  });
  if (rest) {
    rest.hidden = true;
  }
  return rest ? [body, ' ', more, rest] : [body, ' ', more];
}

function textView(t: IText | null | undefined, cls: string): HTMLElement {
  return h('div', { class: cls }, expandable(t?.text ?? '', 600, t?.cut ?? 0));
}

function inputView(name: string, t: IText | undefined): HTMLElement {
  return h(
    'div',
    { class: 'jp-llmops-input' },
    h('span', { class: 'jp-llmops-input-name' }, `${name}: `),
    expandable(t?.text ?? '', 240, t?.cut ?? 0)
  );
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
