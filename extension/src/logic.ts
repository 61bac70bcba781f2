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

/**
 * The grid's view state: the notebook EvalGrid's traits, field for field (workbench.gridview.ViewState),
 * so both faces ask the server's one query (GridQuery) the same question.
 */
export interface IViewState {
  show: string;
  failure_metric: string;
  failure_op: string;
  failure_threshold: number;
  disagree_metric: string;
  disagree_spread: number;
  search: string;
  search_regex: boolean;
  feedback: string;
  sort_by: string;
  sort_metric: string;
  sort_column: string;
  sort_desc: boolean;
  baseline: string;
  diff: string;
  expected_column: string;
  input_columns: string[];
  page: number;
  page_size: number;
}

export const SHOW_OPTIONS: [string, string][] = [
  ['all', 'all rows'],
  ['errors', 'errors'],
  ['failures', 'failures'],
  ['passes', 'passes'],
  ['disagree', 'variants disagree']
];

export const SORT_OPTIONS: [string, string][] = [
  ['case', 'dataset order'],
  ['metric', 'metric'],
  ['delta', 'delta to baseline'],
  ['disagreement', 'disagreement'],
  ['latency', 'latency'],
  ['cost', 'cost']
];

/** Settings that change what a row shows but not which rows: changing them keeps the page. */
const KEEPS_PAGE = new Set(['page', 'baseline', 'diff', 'expected_column', 'input_columns']);

/** The next view state: a filter or sort change goes back to the first page (as the notebook grid does). */
export function nextState(
  s: Partial<IViewState>,
  patch: Partial<IViewState>
): Partial<IViewState> {
  const keep = Object.keys(patch).every(k => KEEPS_PAGE.has(k));
  return { ...s, ...patch, page: keep ? (patch.page ?? s.page ?? 0) : 0 };
}

/** The server's grid query string: the workspace and the view state as JSON (the server fills in defaults). */
export function gridQuery(ws: string, s: Partial<IViewState>): string {
  const q = new URLSearchParams();
  q.set('ws', ws);
  q.set('view', JSON.stringify(s));
  return q.toString();
}

/** A score as the notebook grid shows it: 2 decimals below 10, fewer above. */
export function formatGridScore(v: number | null | undefined): string {
  if (v === null || v === undefined) {
    return '–';
  }
  const a = Math.abs(v);
  if (a >= 1000) {
    return Math.round(v).toLocaleString('en-US');
  }
  if (a >= 100) {
    return v.toFixed(0);
  }
  return a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** The difference to the baseline as a signed short text and whether it is better, worse or equal. */
export function scoreDelta(
  v: number | null | undefined,
  base: number | null | undefined,
  higherIsBetter = true
): { text: string; trend: 'up' | 'down' | 'same' } | null {
  if (v === null || v === undefined || base === null || base === undefined) {
    return null;
  }
  const d = v - base;
  if (Math.abs(d) < 1e-9) {
    return { text: '±0', trend: 'same' };
  }
  const good = higherIsBetter ? d > 0 : d < 0;
  return { text: `${d > 0 ? '+' : '−'}${formatGridScore(Math.abs(d))}`, trend: good ? 'up' : 'down' };
}

export function formatMs(v: number | null | undefined): string | null {
  if (v === null || v === undefined) {
    return null;
  }
  if (v < 1) {
    return '<1 ms';
  }
  return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s` : `${Math.round(v)} ms`;
}

/** "rows 1–25 of 40 cases", or "… of 12 (filtered from 40 cases)". */
export function rowsLabel(page: number, pageSize: number, total: number, nCases: number): string {
  const first = total ? page * pageSize + 1 : 0;
  const last = Math.min(total, (page + 1) * pageSize);
  return `rows ${first}–${last} of ${total}` + (total !== nCases ? ` (filtered from ${nCases} cases)` : ' cases');
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
