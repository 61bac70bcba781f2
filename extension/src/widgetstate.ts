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
