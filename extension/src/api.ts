import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

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

export interface ICell {
  output: string | null;
  error: string | null;
  latency_ms: number | null;
  cost: number | null;
  cached: boolean;
  scores: Record<string, number | null>;
  delta?: Record<string, number>;
}

export interface IGridPage {
  run_id: string;
  total: number;
  page: number;
  page_size: number;
  variants: string[];
  all_variants: string[];
  metrics: string[];
  baseline: string | null;
  input_columns: string[];
  rows: {
    case_id: string;
    position: number;
    inputs: Record<string, unknown>;
    cells: Record<string, ICell | null>;
  }[];
}

export function q(ws: string, extra: Record<string, string | number> = {}): string {
  const p = new URLSearchParams({ ws });
  for (const [k, v] of Object.entries(extra)) {
    p.set(k, String(v));
  }
  return p.toString();
}
