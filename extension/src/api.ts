import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { IViewState } from './logic';

/** GET `<base>/llmops/api/<endPoint>` and parse the JSON (errors carry the server's message). */
export async function requestAPI<T>(
  endPoint: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'llmops', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, {}, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as any);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      console.log('Not a JSON response body.', response);
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || data);
  }
  return data as T;
}

export interface IPage<T> {
  items: T[];
  total: number;
  offset: number;
  limit: number;
}

export interface IWorkspace {
  id: string;
  name: string;
  source: string;
  stamp: string;
}

export interface IRun {
  run_id: string;
  name: string | null;
  status: string;
  dataset_name: string;
  n_cells: number;
  done: number;
  failed: number;
  cost: number;
  created_at: string;
  finished_at: string | null;
  progress: number | null;
}

export interface IDataset {
  name: string;
  version: number;
  hash: string;
  n_cases: number;
  created_at: string;
}

export interface IPrompt {
  name: string;
  version: number;
  hash: string;
  created_at: string;
}

/** A text of the grid page: clipped at the server (`cut` characters not sent). */
export interface IText {
  text: string | null;
  cut: number;
}

export interface IChunk {
  id: string;
  doc_id: string;
  score: number | null;
  text: string | null;
  cut: number;
}

/** One repeat of a cell, as workbench.gridview.GridQuery.page returns it (the notebook grid's shape). */
export interface IRepeat {
  repeat: number;
  output: string | null;
  cut: number;
  error: string | null;
  error_kind: string | null;
  latency_ms: number | null;
  tokens: number | null;
  cost: number | null;
  cached: boolean;
  scores: Record<string, number | null>;
  score_errors: Record<string, string>;
  chunks: IChunk[];
  /** [segment, changed] pairs when the view asks for a word diff (vs baseline or expected) */
  diff?: [string, boolean][];
}

export interface IGridCell {
  repeats: IRepeat[];
  feedback: { thumbs: boolean | null; rating: number | null; comments: { text: string }[]; n: number };
}

export interface IGridRow {
  case_id: string;
  inputs: Record<string, IText>;
  expected: IText | null;
  cells: Record<string, IGridCell>;
}

export interface IMetricInfo {
  name: string;
  min: number | null;
  max: number | null;
  higher_is_better: boolean;
}

/** `runs/<id>/grid`: GridQuery.page(state) plus what the controls choose from and the state used. */
export interface IGridPage {
  rows: IGridRow[];
  total: number;
  n_cases: number;
  page: number;
  pages: number;
  runs: { run_id: string; status: string; cells: number; stored: number }[];
  live: boolean;
  version: string;
  metrics: IMetricInfo[];
  state: IViewState;
  columns: { key: string; run_id: string; variant: string }[];
  metric_names: string[];
  dataset_columns: string[];
  id_column: string | null;
}

export function q(ws: string, extra: Record<string, string | number> = {}): string {
  const p = new URLSearchParams({ ws });
  for (const [k, v] of Object.entries(extra)) {
    p.set(k, String(v));
  }
  return p.toString();
}
