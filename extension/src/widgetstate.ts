/**
 * Saved widget state on by default, so a notebook with an EvalGrid reopens at its saved view.
 *
 * JupyterLab writes widget state into the notebook only when @jupyter-widgets/jupyterlab-manager's
 * `saveState` is true (its default is false); without it a closed notebook reopened shows
 * "Error displaying widget: model not found" where the grid was. We turn it on once, at activation,
 * only when the user has never chosen a value: an explicit `saveState` (true or false) is never touched.
 * Only types are imported here, so the decision is unit-testable without a JupyterLab.
 */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';

export const WIDGET_MANAGER_PLUGIN = '@jupyter-widgets/jupyterlab-manager:plugin';
export const SAVE_STATE = 'saveState';

/** Whether to turn saving on: only when the user's own settings hold no `saveState` value. */
export function shouldEnableSaveState(user: { [key: string]: unknown } | null | undefined): boolean {
  return !user || user[SAVE_STATE] === undefined;
}

/**
 * Turn on `saveState` unless the user set it; resolves to what was done.
 * 'absent' when the widget manager is not installed (nothing to configure).
 */
export async function enableWidgetStateSaving(
  registry: Pick<ISettingRegistry, 'load'>
): Promise<'enabled' | 'kept' | 'absent'> {
  let settings: ISettingRegistry.ISettings;
  try {
    settings = await registry.load(WIDGET_MANAGER_PLUGIN);
  } catch {
    return 'absent';
  }
  if (!shouldEnableSaveState(settings.user)) {
    return 'kept';
  }
  await settings.set(SAVE_STATE, true);
  return 'enabled';
}

export const WIDGET_STATE_MIME = 'application/vnd.jupyter.widget-state+json';
export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';

type ModelStates = { [modelId: string]: any };

/** The model ids a model's state points at ("IPY_MODEL_<id>", e.g. its layout), found recursively. */
function references(value: unknown, found: Set<string>): void {
  if (typeof value === 'string') {
    if (value.startsWith('IPY_MODEL_')) {
      found.add(value.slice('IPY_MODEL_'.length));
    }
  } else if (Array.isArray(value)) {
    value.forEach(v => references(v, found));
  } else if (value && typeof value === 'object') {
    Object.values(value).forEach(v => references(v, found));
  }
}

/**
 * The widget state to save: what the widget manager wrote (`current`) plus, from the state saved before
 * (`previous`), every model an output still shows that the manager left out, with the models it needs.
 *
 * The manager saves only widgets a running kernel owns, so saving a notebook reopened without running it
 * (JupyterLab autosaves it within minutes) would otherwise drop every grid's saved view. A model that a
 * re-run replaced is no longer shown by any output, and is not kept. Returns null when nothing is missing.
 */
export function keepShownState(
  previous: ModelStates | undefined,
  current: ModelStates | undefined,
  shownIds: Iterable<string>
): ModelStates | null {
  if (!previous) {
    return null;
  }
  const merged: ModelStates = { ...(current ?? {}) };
  const todo = [...shownIds];
  let added = false;
  while (todo.length) {
    const id = todo.pop() as string;
    if (id in merged || !(id in previous)) {
      continue;
    }
    merged[id] = previous[id];
    added = true;
    const deps = new Set<string>();
    references(previous[id]?.state, deps);
    todo.push(...deps);
  }
  return added ? merged : null;
}

/** The subset of a notebook model used to keep saved widget state (JupyterLab's INotebookModel has it). */
export interface INotebookLike {
  getMetadata(key: string): any;
  setMetadata(key: string, value: any): void;
  readonly metadataChanged: {
    connect(fn: (sender: any, change: { key: string }) => void): boolean;
  };
  readonly sharedModel: {
    readonly cells: ReadonlyArray<{ cell_type: string; getOutputs?: () => Array<{ [key: string]: any }> }>;
  };
}

function shownModelIds(model: INotebookLike): string[] {
  const ids: string[] = [];
  for (const cell of model.sharedModel.cells) {
    if (cell.cell_type !== 'code' || !cell.getOutputs) {
      continue;
    }
    for (const output of cell.getOutputs()) {
      const view = output.data?.[WIDGET_VIEW_MIME];
      if (view && typeof view.model_id === 'string' && view.model_id) {
        ids.push(view.model_id);
      }
    }
  }
  return ids;
}

/**
 * Keep the saved state of widgets that outputs still show when the widget manager rewrites it at save.
 * Call once the notebook's content is loaded.
 */
export function preserveShownWidgetState(model: INotebookLike): void {
  let last: ModelStates | undefined = model.getMetadata('widgets')?.[WIDGET_STATE_MIME]?.state;
  let merging = false;
  model.metadataChanged.connect((_, change) => {
    if (change.key !== 'widgets' || merging) {
      return;
    }
    const saved = model.getMetadata('widgets');
    const doc = saved?.[WIDGET_STATE_MIME];
    const merged = keepShownState(last, doc?.state, shownModelIds(model));
    if (merged) {
      merging = true;
      try {
        model.setMetadata('widgets', { ...saved, [WIDGET_STATE_MIME]: { ...doc, state: merged } });
      } finally {
        merging = false;
      }
    }
    last = merged ?? doc?.state;
  });
}
