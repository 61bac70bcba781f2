/**
 * Pure logic of the LLMOps panels (no JupyterLab imports, so jest tests it directly):
 * the refresh schedule, grid query strings, diff line classes and number formatting.
 */

/**
 * Refresh schedule: poll fast while something changes or a run is running, back off
 * (doubling up to `max`) while the workspace is quiet, and slow down when the tab is hidden.
 * Polling reads only a change stamp (file size and mtime), so it never opens the database.
 */
export class Backoff {
  constructor(
    readonly min = 1000,
    readonly max = 30000
  ) {
    this._delay = min;
  }

  get delay(): number {
    return this._delay;
  }

  /** Next delay after a poll: reset when something changed or a run is live, else double. */
  next(changed: boolean, running: boolean, hidden = false): number {
    if (changed || running) {
      this._delay = this.min;
    } else {
      this._delay = Math.min(this._delay * 2, this.max);
    }
    return hidden ? Math.max(this._delay, this.max) : this._delay;
  }

  /** After an error (server away, workspace locked): back off, but keep trying. */
  failed(): number {
    this._delay = Math.min(Math.max(this._delay * 2, this.min * 4), this.max);
    return this._delay;
  }

  private _delay: number;
}

export interface IMetricFilter {
  metric: string;
  op: string;
  value: number;
  variant?: string;
}

export interface IGridState {
  page: number;
  pageSize: number;
  search: string;
  errorsOnly: boolean;
  metricFilters: IMetricFilter[];
  variants: string[] | null;
  sortMetric: string | null;
  sortVariant: string | null;
  descending: boolean;
  baseline: string | null;
}

export function defaultGridState(): IGridState {
  return {
    page: 0,
    pageSize: 25,
    search: '',
    errorsOnly: false,
    metricFilters: [],
    variants: null,
    sortMetric: null,
    sortVariant: null,
    descending: true,
    baseline: null
  };
}

/** The server's grid query string for a view state (only non-default parts are sent). */
export function gridQuery(ws: string, s: IGridState): string {
  const q = new URLSearchParams();
  q.set('ws', ws);
  q.set('page', String(s.page));
  q.set('page_size', String(s.pageSize));
  const filters: Record<string, unknown> = {};
  if (s.search.trim()) {
    filters.search = s.search.trim();
  }
  if (s.errorsOnly) {
    filters.errors_only = true;
  }
  if (s.metricFilters.length) {
    filters.metrics = s.metricFilters;
  }
  if (s.variants) {
    filters.variants = s.variants;
  }
  if (Object.keys(filters).length) {
    q.set('filters', JSON.stringify(filters));
  }
  if (s.sortMetric) {
    q.set(
      'sort',
      [s.sortMetric, s.sortVariant ?? '', s.descending ? 'desc' : 'asc'].join(
        ':'
      )
    );
  }
  if (s.baseline) {
    q.set('baseline', s.baseline);
  }
  return q.toString();
}

/**
 * Parse "metric op value" (any variant) or "metric@variant op value" (e.g. "token_f1@terse < 0.5")
 * into a metric filter, or null when it does not parse.
 */
export function parseMetricFilter(text: string): IMetricFilter | null {
  const m =
    /^\s*([\w.\-]+)(?:@([^\s<>=!]+))?\s*(<=|>=|!=|==|<|>|=)\s*(-?\d+(?:\.\d+)?)\s*$/.exec(
      text
    );
  if (!m) {
    return null;
  }
  const f: IMetricFilter = { metric: m[1], op: m[3], value: Number(m[4]) };
  if (m[2]) {
    f.variant = m[2];
  }
  return f;
}

export function pageCount(total: number, pageSize: number): number {
  return Math.max(1, Math.ceil(total / pageSize));
}

/** CSS class of a unified-diff line. */
export function diffLineClass(line: string): string {
  if (line.startsWith('+++') || line.startsWith('---')) {
    return 'jp-llmops-diff-file';
  }
  if (line.startsWith('@@')) {
    return 'jp-llmops-diff-hunk';
  }
  if (line.startsWith('+')) {
    return 'jp-llmops-diff-add';
  }
  if (line.startsWith('-')) {
    return 'jp-llmops-diff-del';
  }
  return 'jp-llmops-diff-ctx';
}

export function formatCost(cost: number | null | undefined): string {
  if (cost === null || cost === undefined) {
    return '–';
  }
  if (cost === 0) {
    return '$0';
  }
  return cost < 0.01 ? `$${cost.toPrecision(2)}` : `$${cost.toFixed(2)}`;
}

export function formatScore(v: number | null | undefined): string {
  return v === null || v === undefined ? '–' : v.toFixed(3);
}

export function formatProgress(done: number, total: number): string {
  if (!total) {
    return `${done}`;
  }
  return `${done}/${total} (${Math.floor((100 * done) / total)}%)`;
}

/**
 * `%llmops` snippets the palette inserts into the active notebook. `ws` is the workspace
 * folder relative to the server root (a notebook at the root sees the same relative path).
 */
export function snippets(ws: string | null, runId: string | null): Record<string, string> {
  const w = ws && ws !== '.llmops' ? ` --workspace ${ws}` : '';
  const run = runId ?? 'RUN_ID';
  return {
    'load the magics': '%load_ext workbench',
    'list runs': `%llmops runs${w}`,
    'leaderboard of the run': `%llmops leaderboard ${run}${w}`,
    'results of the run': `%llmops results ${run}${w}`,
    'run a spec file': `%llmops run spec.yaml${w}`,
    'run the spec in the cell': `%%llmops run${w}\ndataset: {name: demo, path: data.jsonl, id: id}\nprompts:\n  - {name: terse, user: "Question: {{ question }}"}\nmodels: [local/extractive]\nmetrics: [{name: token_f1, expected: answer}]`
  };
}
