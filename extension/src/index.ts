import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  MainAreaWidget
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { DiffPanel, GridPanel } from './grid';
import { diffLineClass, snippets } from './logic';
import { LLMOpsSidebar } from './sidebar';
import { enableWidgetStateSaving, preserveShownWidgetState } from './widgetstate';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<rect x="3" y="3" width="8" height="8" rx="1"/><rect x="13" y="3" width="8" height="8" rx="1" opacity=".6"/>' +
  '<rect x="3" y="13" width="8" height="8" rx="1" opacity=".6"/><rect x="13" y="13" width="8" height="8" rx="1"/></g></svg>';

const icon = new LabIcon({ name: 'llmops-workbench:icon', svgstr: ICON_SVG });

namespace CommandIDs {
  export const openWorkspace = 'llmops:open-workspace';
  export const refresh = 'llmops:refresh';
  export const openRun = 'llmops:open-run';
  export const openDiff = 'llmops:open-prompt-diff';
  export const insertSnippet = 'llmops:insert-snippet';
}

/** The LLMOps sidebar, run grid and prompt diff panels, and the palette commands. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'llmops-workbench:plugin',
  description: 'LLMOps Workbench sidebar, run grid and prompt diffs',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    if (settingRegistry) {
      // saved widget state, so a grid reopens at its saved view (never over the user's own choice)
      enableWidgetStateSaving(settingRegistry).catch(reason =>
        console.warn('llmops-workbench: could not turn on saved widget state', reason)
      );
    }
    if (notebooks) {
      // a notebook reopened and saved before its cells run again keeps its grids' saved views
      const keep = (panel: { context: { ready: Promise<void>; model: any } }) =>
        void panel.context.ready.then(() => preserveShownWidgetState(panel.context.model));
      notebooks.forEach(keep);
      notebooks.widgetAdded.connect((_, panel) => keep(panel));
    }
    const settings = app.serviceManager.serverSettings;
    const { commands, shell } = app;

    const sidebar = new LLMOpsSidebar(
      {
        openRun: (ws, runId) =>
          void commands.execute(CommandIDs.openRun, { ws, runId }),
        openDiff: (ws, name, a, b) =>
          void commands.execute(CommandIDs.openDiff, { ws, name, a, b })
      },
      settings
    );
    sidebar.title.icon = icon;
    shell.add(sidebar, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(sidebar, 'llmops-sidebar');
    }

    const grids = new Map<string, MainAreaWidget<GridPanel>>();
    sidebar.changed.connect((_, ws) => {
      for (const g of grids.values()) {
        if (g.content.ws === ws) {
          void g.content.load();
        }
      }
    });

    commands.addCommand(CommandIDs.openWorkspace, {
      label: 'LLMOps: Open Workspace…',
      execute: async args => {
        let ws = args.ws as string | undefined;
        if (!ws) {
          await sidebar.refresh(true);
          const items = sidebar.workspaces.map(w => w.id);
          if (!items.length) {
            return;
          }
          const res = await InputDialog.getItem({
            title: 'Open LLMOps workspace',
            items,
            current: sidebar.workspace ?? items[0]
          });
          if (!res.button.accept || !res.value) {
            return;
          }
          ws = res.value;
        }
        await sidebar.openWorkspace(ws);
        shell.activateById(sidebar.id);
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'LLMOps: Refresh',
      execute: () => sidebar.refresh(true)
    });

    commands.addCommand(CommandIDs.openRun, {
      label: 'LLMOps: Open Run Grid…',
      execute: async args => {
        const ws = (args.ws as string) ?? sidebar.workspace;
        let runId = args.runId as string | undefined;
        if (!ws) {
          return;
        }
        if (!runId) {
          const items = sidebar.runs.map(r => `${r.run_id} ${r.name ?? ''}`.trim());
          if (!items.length) {
            return;
          }
          const res = await InputDialog.getItem({ title: 'Open run', items });
          if (!res.button.accept || !res.value) {
            return;
          }
          runId = res.value.split(' ')[0];
        }
        const key = `${ws}:${runId}`;
        let w = grids.get(key);
        if (!w || w.isDisposed) {
          w = new MainAreaWidget({ content: new GridPanel(ws, runId, settings) });
          w.id = `llmops-grid-${runId}`;
          const run = sidebar.runs.find(r => r.run_id === runId);
          w.title.label = run?.name ? `${run.name} · ${runId.slice(-6)}` : `Run ${runId}`;
          w.title.caption = `LLMOps run ${runId} (${ws})`;
          w.title.icon = icon;
          w.title.closable = true;
          grids.set(key, w);
          w.disposed.connect(() => grids.delete(key));
          shell.add(w, 'main');
        }
        shell.activateById(w.id);
      }
    });

    commands.addCommand(CommandIDs.openDiff, {
      label: 'LLMOps: Diff Prompt Versions',
      execute: args => {
        const w = new MainAreaWidget({
          content: new DiffPanel(
            args.ws as string,
            args.name as string,
            Number(args.a),
            Number(args.b),
            settings,
            diffLineClass
          )
        });
        w.title.label = `${args.name} v${args.a}→v${args.b}`;
        w.title.icon = icon;
        w.title.closable = true;
        shell.add(w, 'main');
        shell.activateById(w.id);
      }
    });

    commands.addCommand(CommandIDs.insertSnippet, {
      label: args =>
        args.key ? `LLMOps: Insert %llmops snippet: ${args.key}` : 'LLMOps: Insert %llmops Snippet',
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async args => {
        const panel = notebooks?.currentWidget;
        if (!panel) {
          return;
        }
        const runId = sidebar.runs.length ? sidebar.runs[0].run_id : null;
        const all = snippets(sidebar.workspace, runId);
        let key = args.key as string | undefined;
        if (!key) {
          const res = await InputDialog.getItem({
            title: 'Insert %llmops snippet',
            items: Object.keys(all)
          });
          if (!res.button.accept || !res.value) {
            return;
          }
          key = res.value;
        }
        NotebookActions.insertBelow(panel.content);
        const cell = panel.content.activeCell;
        if (cell) {
          cell.model.sharedModel.setSource(all[key] ?? '');
        }
      }
    });

    if (palette) {
      const category = 'LLMOps';
      for (const command of [
        CommandIDs.openWorkspace,
        CommandIDs.refresh,
        CommandIDs.openRun
      ]) {
        palette.addItem({ command, category });
      }
      for (const key of Object.keys(snippets(null, null))) {
        palette.addItem({ command: CommandIDs.insertSnippet, category, args: { key } });
      }
    }
  }
};

export default plugin;
