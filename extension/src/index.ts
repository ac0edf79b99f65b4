// The dspyopt JupyterLab extension: a left-area panel over the run catalogue, run tabs, a run form, compare, MLflow,
// and the production sections (experiments with their tabs, drift alarms).
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, IFrame, MainAreaWidget, Notification, WidgetTracker } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon, SidePanel } from '@jupyterlab/ui-components';
import { Token } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';
import { ApiError, h, post, request } from './api';
import { CompareView } from './compare';
import { RunDetail } from './detail';
import { RunForm } from './form';
import { AlarmsSection, ExperimentView, ExperimentsSection } from './production';
import { RunsList } from './runs';

export { ApiError, request, post, follow } from './api';

const PLUGIN_ID = 'dspyopt:plugin';

/** The dspyopt panel, for other extensions: add sections to it (runs, experiments and drift alarms are built in). */
export interface IDspyoptPanel {
  /** Add a collapsible section below the runs (lower rank first). */
  addSection(widget: Widget, rank?: number): void;
  /** Open a run's tab. */
  openRun(runId: string): void;
}
export const IDspyoptPanel = new Token<IDspyoptPanel>('dspyopt:IDspyoptPanel', 'The dspyopt side panel: add sections to it, open runs.');

export const CommandIDs = {
  open: 'dspyopt:open-panel',
  newRun: 'dspyopt:new-run',
  openRun: 'dspyopt:open-run',
  openExperiment: 'dspyopt:open-experiment',
  stopRun: 'dspyopt:stop-run',
  resumeRun: 'dspyopt:resume-run',
  compare: 'dspyopt:compare-runs',
  mlflow: 'dspyopt:open-mlflow',
  refresh: 'dspyopt:refresh'
};

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">
<path d="M3 20h18v1.5H3z"/><path d="M4 17l4.5-5 3.5 3 6.5-8 1.2 1-7.5 9.2-3.5-3L5.2 18z"/><circle cx="19.2" cy="6.8" r="2"/></g></svg>`;
export const dspyoptIcon = new LabIcon({ name: 'dspyopt:icon', svgstr: ICON_SVG });

const plugin: JupyterFrontEndPlugin<IDspyoptPanel> = {
  id: PLUGIN_ID,
  description: 'Runs of dspyopt: list, follow live, start, stop, resume, compare, and MLflow.',
  autoStart: true,
  provides: IDspyoptPanel,
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, settingRegistry: ISettingRegistry | null, restorer: ILayoutRestorer | null): IDspyoptPanel => {
    const { commands, shell } = app;
    const notify = (message: string, kind: 'error' | 'info' = 'info') => {
      if (kind === 'error') {
        Notification.error(message, { autoClose: 8000 });
      } else {
        Notification.info(message, { autoClose: 4000 });
      }
    };
    const tracker = new WidgetTracker<MainAreaWidget>({ namespace: 'dspyopt' });

    const openRun = (runId: string) => {
      const existing = tracker.find(w => w.content instanceof RunDetail && (w.content as RunDetail).runId === runId);
      if (existing) {
        shell.activateById(existing.id);
        return;
      }
      const w = new MainAreaWidget({ content: new RunDetail(runId, notify) });
      w.id = `dspyopt-run-tab-${runId}`;
      w.title.icon = dspyoptIcon;
      w.content.title.changed.connect(() => {
        w.title.label = w.content.title.label;
        w.title.caption = w.content.title.caption;
      });
      void tracker.add(w);
      shell.add(w, 'main');
      shell.activateById(w.id);
    };

    const panel = new SidePanel();
    panel.id = 'dspyopt-panel';
    panel.title.icon = dspyoptIcon;
    panel.title.caption = 'dspyopt runs';
    panel.addClass('dspyopt-panel');
    const header = h('div', { class: 'dspyopt-panel-title' }, h('span', { text: 'DSPYOPT' }));
    panel.header.node.appendChild(header);
    const runs = new RunsList({
      openRun,
      newRun: () => void commands.execute(CommandIDs.newRun),
      compare: (a?: string, b?: string) => void commands.execute(CommandIDs.compare, { a: a || '', b: b || '' }),
      openMlflow: () => void commands.execute(CommandIDs.mlflow),
      notify
    });
    panel.addWidget(runs);
    const openExperiment = (id: string) => {
      const existing = tracker.find(w => w.content instanceof ExperimentView && (w.content as ExperimentView).experimentId === id);
      if (existing) {
        shell.activateById(existing.id);
        return;
      }
      const w = new MainAreaWidget({ content: new ExperimentView(id) });
      w.id = `dspyopt-experiment-tab-${id}`;
      w.title.label = `Experiment ${id}`;
      w.title.icon = dspyoptIcon;
      void tracker.add(w);
      shell.add(w, 'main');
      shell.activateById(w.id);
    };
    // the production sections: the runtime's experiments and the learner's drift alarms, below the runs
    const experiments = new ExperimentsSection(openExperiment);
    const alarms = new AlarmsSection();
    panel.addWidget(experiments);
    panel.addWidget(alarms);
    const ranks: number[] = [0, 50, 60];
    shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'dspyopt-panel');
    }
    let connected = false;
    const connect = () => {
      if (!connected) {
        connected = true;
        runs.connect();
        experiments.connect();
        alarms.connect();
      }
    };
    // follow the catalogue once the panel is first shown (no stream for users who never open it)
    const poll = window.setInterval(() => {
      if (panel.isVisible) {
        connect();
        window.clearInterval(poll);
      }
    }, 500);

    commands.addCommand(CommandIDs.open, {
      label: 'dspyopt: Show runs',
      caption: 'Open the dspyopt panel',
      icon: dspyoptIcon,
      execute: () => {
        shell.activateById(panel.id);
        connect();
      }
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'dspyopt: Refresh runs, experiments and alarms',
      execute: () => {
        runs.refresh();
        void experiments.refresh();
        void alarms.refresh();
      }
    });
    commands.addCommand(CommandIDs.openExperiment, {
      label: args => (args.id ? `dspyopt: Open experiment ${args.id}` : 'dspyopt: Open experiment…'),
      execute: args => {
        const id = (args.id as string) || window.prompt('Experiment id:') || '';
        if (id) {
          openExperiment(id);
        }
      }
    });
    commands.addCommand(CommandIDs.openRun, {
      label: args => (args.runId ? `dspyopt: Open run ${String(args.runId).slice(0, 8)}` : 'dspyopt: Open run…'),
      execute: async args => {
        let id = args.runId as string | undefined;
        if (!id) {
          id = window.prompt('Run id (or a unique prefix):') || undefined;
        }
        if (id) {
          openRun(id);
        }
      }
    });
    let form: MainAreaWidget<RunForm> | null = null;
    commands.addCommand(CommandIDs.newRun, {
      label: 'dspyopt: New run…',
      caption: 'Start an optimization run from a form or a YAML config',
      execute: args => {
        if (!form || form.isDisposed) {
          form = new MainAreaWidget({ content: new RunForm(id => openRun(id)) });
          form.id = 'dspyopt-new-run-tab';
          form.title.label = 'New dspyopt run';
          form.title.icon = dspyoptIcon;
          shell.add(form, 'main');
        }
        if (args.yaml) {
          form.content.setYaml(String(args.yaml));
        }
        shell.activateById(form.id);
      }
    });
    const act = (action: 'stop' | 'resume') => async (args: any) => {
      let id = args.runId as string | undefined;
      if (!id) {
        const cur = shell.currentWidget as MainAreaWidget | null;
        id = cur && cur.content instanceof RunDetail ? (cur.content as RunDetail).runId : undefined;
      }
      if (!id) {
        notify(`Open a run first, or pass its id. Fix: click a run in the dspyopt panel, then ${action} it.`, 'error');
        return;
      }
      try {
        await post(`runs/${encodeURIComponent(id)}/${action}`);
        notify(action === 'stop' ? `Stopping run ${id.slice(0, 8)}.` : `Resumed run ${id.slice(0, 8)}.`);
        if (action === 'resume') {
          openRun(id);
        }
      } catch (err) {
        notify((err as ApiError).message, 'error');
      }
    };
    commands.addCommand(CommandIDs.stopRun, { label: 'dspyopt: Stop run', execute: act('stop') });
    commands.addCommand(CommandIDs.resumeRun, { label: 'dspyopt: Resume run', execute: act('resume') });
    let compare: MainAreaWidget<CompareView> | null = null;
    commands.addCommand(CommandIDs.compare, {
      label: 'dspyopt: Compare two runs',
      execute: args => {
        const a = (args.a as string) || undefined, b = (args.b as string) || undefined;
        if (!compare || compare.isDisposed) {
          compare = new MainAreaWidget({ content: new CompareView(() => runs.runs, a, b) });
          compare.id = 'dspyopt-compare-tab';
          compare.title.label = 'Compare runs';
          compare.title.icon = dspyoptIcon;
          shell.add(compare, 'main');
        } else if (a && b) {
          compare.content.set(a, b);
        }
        shell.activateById(compare.id);
      }
    });
    let mlflow: MainAreaWidget | null = null;
    commands.addCommand(CommandIDs.mlflow, {
      label: 'dspyopt: Open the MLflow UI',
      execute: async () => {
        if (mlflow && !mlflow.isDisposed) {
          shell.activateById(mlflow.id);
          return;
        }
        const holder = new Widget();
        holder.addClass('dspyopt-mlflow');
        holder.node.append(h('div', { class: 'dspyopt-muted dspyopt-pad', text: 'Starting the MLflow UI on this machine…' }));
        mlflow = new MainAreaWidget({ content: holder });
        mlflow.id = 'dspyopt-mlflow-tab';
        mlflow.title.label = 'MLflow';
        mlflow.title.icon = dspyoptIcon;
        mlflow.title.closable = true;
        shell.add(mlflow, 'main');
        shell.activateById(mlflow.id);
        try {
          const ui = await post('mlflow');
          const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups'] });
          frame.url = ui.url;
          frame.addClass('dspyopt-mlflow-frame');
          holder.node.replaceChildren(h('div', { class: 'dspyopt-mlflow-bar' }, 'MLflow at ', h('a', { href: ui.url, target: '_blank', rel: 'noopener', text: ui.url }), ` (store: ${ui.tracking_uri})`), frame.node);
        } catch (err) {
          holder.node.replaceChildren(h('div', { class: 'dspyopt-error dspyopt-pad', text: (err as ApiError).message }));
        }
      }
    });
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        if (command !== CommandIDs.openRun && command !== CommandIDs.openExperiment) {
          palette.addItem({ command, category: 'dspyopt' });
        }
      }
    }

    if (settingRegistry) {
      const apply = async (s: ISettingRegistry.ISettings) => {
        const body = { runs_dir: (s.get('runsDirectory').composite as string) || '', mlflow_uri: (s.get('mlflowUri').composite as string) || '' };
        try {
          await request('settings', { method: 'PUT', body: JSON.stringify(body) });
          if (connected) {
            runs.connect();
          }
        } catch (err) {
          notify(`dspyopt settings: ${(err as ApiError).message}`, 'error');
        }
      };
      void settingRegistry.load(PLUGIN_ID).then(s => {
        void apply(s);
        s.changed.connect(() => void apply(s));
      }).catch(err => console.warn('dspyopt: no settings', err));
    }

    return {
      addSection: (widget: Widget, rank = 100) => {
        const i = ranks.findIndex(r => r > rank);
        const at = i < 0 ? ranks.length : i;
        ranks.splice(at, 0, rank);
        panel.insertWidget(at, widget);
      },
      openRun
    };
  }
};

export default plugin;
