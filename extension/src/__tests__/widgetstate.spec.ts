import {
  SAVE_STATE,
  WIDGET_MANAGER_PLUGIN,
  enableWidgetStateSaving,
  keepShownState,
  shouldEnableSaveState
} from '../widgetstate';

describe('shouldEnableSaveState', () => {
  it('turns saving on only when the user never chose', () => {
    expect(shouldEnableSaveState(undefined)).toBe(true);
    expect(shouldEnableSaveState({})).toBe(true);
    expect(shouldEnableSaveState({ other: 1 })).toBe(true);
    expect(shouldEnableSaveState({ saveState: false })).toBe(false);
    expect(shouldEnableSaveState({ saveState: true })).toBe(false);
  });
});

/** The part of a plugin's settings the function uses, holding the user's values like the registry does. */
function registryWith(user: { [key: string]: unknown } | null) {
  const writes: Array<[string, unknown]> = [];
  const loads: string[] = [];
  const registry = {
    load: async (id: string) => {
      loads.push(id);
      if (user === null) {
        throw new Error(`No setting schema for ${id}`);
      }
      return {
        user,
        set: async (key: string, value: unknown) => {
          writes.push([key, value]);
          user[key] = value;
        }
      } as any;
    }
  };
  return { registry, writes, loads };
}

describe('enableWidgetStateSaving', () => {
  it('writes saveState=true into the widget manager settings when unset, once', async () => {
    const user: { [key: string]: unknown } = {};
    const { registry, writes, loads } = registryWith(user);
    expect(await enableWidgetStateSaving(registry)).toBe('enabled');
    expect(loads).toEqual([WIDGET_MANAGER_PLUGIN]);
    expect(writes).toEqual([[SAVE_STATE, true]]);
    // the next activation sees the value now set and leaves it alone
    expect(await enableWidgetStateSaving(registry)).toBe('kept');
    expect(writes).toHaveLength(1);
  });

  it('never overrides an explicit choice', async () => {
    const { registry, writes } = registryWith({ saveState: false });
    expect(await enableWidgetStateSaving(registry)).toBe('kept');
    expect(writes).toEqual([]);
  });

  it('does nothing when the widget manager is not installed', async () => {
    const { registry, writes } = registryWith(null);
    expect(await enableWidgetStateSaving(registry)).toBe('absent');
    expect(writes).toEqual([]);
  });
});

describe('keepShownState', () => {
  const grid = {
    model_name: 'AnyModel',
    state: { layout: 'IPY_MODEL_lay1', snapshot: { rows: [{ case_id: 'c5' }], page: 1 } }
  };
  const layout = { model_name: 'LayoutModel', state: {} };
  const old = { model_name: 'AnyModel', state: { layout: 'IPY_MODEL_lay2' } };
  const previous = { grid1: grid, lay1: layout, old1: old, lay2: layout };

  it('puts back a shown model the manager left out, with the models it points at', () => {
    expect(keepShownState(previous, {}, ['grid1'])).toEqual({ grid1: grid, lay1: layout });
  });

  it('keeps what the manager wrote and drops models no output shows any more', () => {
    const live = { grid2: { model_name: 'AnyModel', state: {} } };
    expect(keepShownState(previous, live, ['grid1', 'grid2'])).toEqual({ ...live, grid1: grid, lay1: layout });
  });

  it('changes nothing when the manager already wrote every shown model, or nothing was saved before', () => {
    expect(keepShownState(previous, { grid1: grid, lay1: layout }, ['grid1'])).toBeNull();
    expect(keepShownState(undefined, {}, ['grid1'])).toBeNull();
    expect(keepShownState(previous, {}, ['unknown'])).toBeNull();
  });
});
