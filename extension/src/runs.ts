// The runs list of the dspyopt panel: the run catalogue, live, with filter, sort, selection for compare, stop/resume.
import { Widget } from '@lumino/widgets';
import { Signal, ISignal } from '@lumino/signaling';
import { ApiError, IRunRow, follow, fmtCI, fmtCost, fmtDuration, fmtScore, fmtSigned, fmtWhen, h, post, request, runTitle, statusBadge } from './api';

export interface IRunsActions {
  openRun(runId: string): void;
  newRun(): void;
  compare(a?: string, b?: string): void;
  openMlflow(): void;
  notify(message: string, kind?: 'error' | 'info'): void;
}

type SortKey = 'started' | 'optimized' | 'diff' | 'cost' | 'wall_s';
const SORTS: [SortKey, string][] = [
  ['started', 'newest first'],
  ['optimized', 'best score'],
  ['diff', 'largest lift'],
  ['cost', 'highest cost'],
  ['wall_s', 'longest']
];
const STATUSES = ['all', 'running', 'finished', 'stopped', 'failed', 'incomplete'];

export class RunsList extends Widget {
  private rows: IRunRow[] = [];
  private selected: string[] = [];
  private query = '';
  private status = 'all';
  private sort: SortKey = 'started';
  private listEl: HTMLElement;
  private countEl: HTMLElement;
  private compareBtn: HTMLButtonElement;
  private rootEl: HTMLElement;
  private close_: (() => void) | null = null;
  private tickTimer = 0;
  private retryTimer = 0;
  private _changed = new Signal<this, IRunRow[]>(this);

  constructor(private actions: IRunsActions) {
    super();
    this.addClass('dspyopt-runs');
    this.title.label = 'Runs';
    const newBtn = h('button', { class: 'dspyopt-btn dspyopt-primary', title: 'Start a run from a form or a YAML config', onclick: () => actions.newRun() }, '+ New run') as HTMLButtonElement;
    this.compareBtn = h('button', { class: 'dspyopt-btn', title: 'Tick two finished runs to compare them', onclick: () => this.compareSelected() }, 'Compare') as HTMLButtonElement;
    const mlflowBtn = h('button', { class: 'dspyopt-btn', title: 'Open the MLflow UI in a tab', onclick: () => actions.openMlflow() }, 'MLflow');
    const search = h('input', { class: 'dspyopt-input dspyopt-search', type: 'search', placeholder: 'Filter: id, optimizer, task, model…', 'aria-label': 'Filter runs' }) as HTMLInputElement;
    search.addEventListener('input', () => {
      this.query = search.value.trim().toLowerCase();
      this.render();
    });
    const statusSel = h('select', { class: 'dspyopt-select', 'aria-label': 'Status', title: 'Show runs with this status' }, ...STATUSES.map(s => h('option', { value: s, text: s === 'all' ? 'all statuses' : s }))) as HTMLSelectElement;
    statusSel.addEventListener('change', () => {
      this.status = statusSel.value;
      this.render();
    });
    const sortSel = h('select', { class: 'dspyopt-select', 'aria-label': 'Sort', title: 'Sort the runs' }, ...SORTS.map(([k, l]) => h('option', { value: k, text: l }))) as HTMLSelectElement;
    sortSel.addEventListener('change', () => {
      this.sort = sortSel.value as SortKey;
      this.render();
    });
    this.countEl = h('span', { class: 'dspyopt-count' });
    this.rootEl = h('div', { class: 'dspyopt-root' });
    this.listEl = h('div', { class: 'dspyopt-list', role: 'list' });
    this.node.append(
      h('div', { class: 'dspyopt-toolbar' }, newBtn, this.compareBtn, mlflowBtn),
      h('div', { class: 'dspyopt-filters' }, search, statusSel, sortSel),
      h('div', { class: 'dspyopt-summary' }, this.countEl),
      this.listEl,
      this.rootEl
    );
    this.render();
  }

  /** The rows changed (sent by the server's catalogue stream). */
  get changed(): ISignal<this, IRunRow[]> {
    return this._changed;
  }

  get runs(): IRunRow[] {
    return this.rows;
  }

  /** Follow the catalogue (server-sent events); on a broken stream, load once and retry later. */
  connect(): void {
    this.disconnect();
    this.close_ = follow('stream', {}, {
      runs: (data: any) => this.setRows(data.runs, data.root),
      error: () => {
        this.disconnect();
        void this.refresh();
        this.retryTimer = window.setTimeout(() => this.connect(), 5000);
      }
    });
    // the elapsed time of running runs ticks here (the stream sends only what changed on disk)
    this.tickTimer = window.setInterval(() => this.tick(), 1000);
  }

  disconnect(): void {
    if (this.close_) {
      this.close_();
      this.close_ = null;
    }
    window.clearInterval(this.tickTimer);
    window.clearTimeout(this.retryTimer);
  }

  async refresh(): Promise<void> {
    try {
      const data = await request('runs');
      this.setRows(data.runs, data.root);
    } catch (err) {
      this.listEl.replaceChildren(h('div', { class: 'dspyopt-error', text: (err as Error).message }));
    }
  }

  dispose(): void {
    this.disconnect();
    super.dispose();
  }

  private setRows(rows: IRunRow[], root: string): void {
    this.rows = rows;
    this.selected = this.selected.filter(id => rows.some(r => r.run_id === id));
    this.rootEl.textContent = root ? `runs in ${root}` : '';
    this.rootEl.title = root || '';
    this.render();
    this._changed.emit(rows);
  }

  private visible(): IRunRow[] {
    const q = this.query;
    const rows = this.rows.filter(r => {
      if (this.status !== 'all' && r.status !== this.status) {
        return false;
      }
      if (!q) {
        return true;
      }
      return [r.run_id, r.name, r.optimizer, r.preset, r.task, r.lm, r.status].some(v => v && v.toLowerCase().includes(q));
    });
    const key = this.sort;
    const val = (r: IRunRow) => (r[key] === null || r[key] === undefined ? -Infinity : (r[key] as number));
    return rows.sort((a, b) => val(b) - val(a));
  }

  private tick(): void {
    for (const el of Array.from(this.listEl.querySelectorAll('[data-elapsed]'))) {
      const started = Number((el as HTMLElement).dataset.elapsed);
      el.textContent = fmtDuration(Date.now() / 1000 - started);
    }
  }

  private render(): void {
    const rows = this.visible();
    const n = this.rows.length;
    this.countEl.textContent = n === 0 ? '' : rows.length === n ? `${n} run${n === 1 ? '' : 's'}` : `${rows.length} of ${n} runs`;
    if (this.selected.length) {
      this.countEl.textContent += ` · ${this.selected.length} selected`;
    }
    this.compareBtn.disabled = this.selected.length !== 2;
    this.compareBtn.title = this.selected.length === 2 ? 'Compare the two ticked runs' : 'Tick two finished runs to compare them';
    if (!n) {
      this.listEl.replaceChildren(
        h('div', { class: 'dspyopt-empty' }, h('p', { text: 'No runs yet.' }), h('p', { text: 'Start one with “+ New run”, or from a notebook: %load_ext dspyopt_nb then %dspyopt run sst2.' }))
      );
      return;
    }
    if (!rows.length) {
      this.listEl.replaceChildren(h('div', { class: 'dspyopt-empty', text: 'No run matches the filter.' }));
      return;
    }
    this.listEl.replaceChildren(...rows.map(r => this.renderRow(r)));
  }

  private renderRow(r: IRunRow): HTMLElement {
    const done = r.status === 'finished' || r.status === 'stopped' || r.status === 'failed';
    const box = h('input', { type: 'checkbox', class: 'dspyopt-check', title: 'Select for compare', 'aria-label': `select run ${r.run_id}` }) as HTMLInputElement;
    box.checked = this.selected.includes(r.run_id);
    box.disabled = !done && !box.checked;
    box.addEventListener('click', ev => {
      ev.stopPropagation();
      this.selected = box.checked ? [...this.selected, r.run_id].slice(-2) : this.selected.filter(id => id !== r.run_id);
      this.render();
    });
    const actions = h('span', { class: 'dspyopt-row-actions' });
    if (r.status === 'running') {
      actions.append(h('button', { class: 'dspyopt-link dspyopt-stop', title: 'Stop: the run ends after the current call with its best so far', onclick: (ev: Event) => { ev.stopPropagation(); void this.act(r, 'stop'); } }, 'Stop'));
    } else if (r.status !== 'finished') {
      actions.append(h('button', { class: 'dspyopt-link dspyopt-resume', title: 'Resume: run it again; what was done comes back from the cache', onclick: (ev: Event) => { ev.stopPropagation(); void this.act(r, 'resume'); } }, 'Resume'));
    }
    let line2: HTMLElement;
    if (r.status === 'running' || (r.status === 'incomplete' && r.progress !== null)) {
      const pct = Math.round(100 * (r.progress || 0));
      line2 = h('div', { class: 'dspyopt-row-progress' },
        h('div', { class: 'dspyopt-bar', title: `${r.metric_calls || 0} of about ${r.estimated_metric_calls || '?'} metric calls` }, h('div', { class: 'dspyopt-bar-fill', style: { width: `${pct}%` } })),
        h('span', { class: 'dspyopt-pct', text: `${pct}%` }),
        r.best !== null ? h('span', { class: 'dspyopt-muted', title: 'best validation score so far', text: `best ${fmtScore(r.best)}` }) : null);
    } else if (r.optimized !== null) {
      const ci = r.ci && r.ci.length === 2 ? `[${fmtSigned(r.ci[0], 2)}, ${fmtSigned(r.ci[1], 2)}]` : '';
      line2 = h('div', { class: 'dspyopt-row-scores', title: `held-out test: baseline ${fmtScore(r.baseline)} → optimized ${fmtScore(r.optimized)}; lift ${fmtSigned(r.diff)} with its 95% CI ${fmtCI(r.ci)}${r.p_value !== null ? `, p = ${r.p_value.toPrecision(2)}` : ''}` },
        h('span', {}, h('span', { class: 'dspyopt-muted', text: `${fmtScore(r.baseline, 2)} → ` }), h('b', { text: fmtScore(r.optimized, 2) })),
        r.diff !== null ? h('span', { class: `dspyopt-lift ${r.diff > 0 ? 'dspyopt-up' : r.diff < 0 ? 'dspyopt-down' : ''}` }, `${fmtSigned(r.diff, 2)} `, h('span', { class: 'dspyopt-ci', text: ci })) : null);
    } else {
      line2 = h('div', { class: 'dspyopt-row-scores dspyopt-muted', text: r.status === 'incomplete' ? 'no result: resume it' : '' });
    }
    const elapsed = r.status === 'running' && r.started;
    return h('div', { class: `dspyopt-row${box.checked ? ' dspyopt-selected' : ''}`, role: 'listitem', 'data-run-id': r.run_id,
      title: `${runTitle(r)}\nrun ${r.run_id}\nmodel ${r.lm || '?'}\nstarted ${fmtWhen(r.started)}\nClick to open`, onclick: () => this.actions.openRun(r.run_id) },
      h('div', { class: 'dspyopt-row-head' }, box, statusBadge(r.status), h('span', { class: 'dspyopt-row-title', text: `${r.optimizer || '?'}/${r.preset || '?'}` }), actions),
      line2,
      h('div', { class: 'dspyopt-row-meta' },
        h('span', { text: r.task || (r.lm ? r.lm.replace(/-[0-9a-f]{12}$/, '') : '') }),
        r.status === 'running' ? null : h('span', { title: 'cost', text: fmtCost(r.cost) }),
        elapsed ? h('span', { 'data-elapsed': String(r.started), title: 'running for', text: fmtDuration(Date.now() / 1000 - (r.started as number)) }) : h('span', { title: 'wall time', text: fmtDuration(r.wall_s) }),
        h('code', { class: 'dspyopt-id', text: r.run_id.slice(0, 8) })));
  }

  private async act(r: IRunRow, action: 'stop' | 'resume'): Promise<void> {
    try {
      await post(`runs/${encodeURIComponent(r.run_id)}/${action}`);
      this.actions.notify(action === 'stop' ? `Stopping run ${r.run_id.slice(0, 8)}: it ends after the current call with its best so far.` : `Resumed run ${r.run_id.slice(0, 8)}.`, 'info');
    } catch (err) {
      this.actions.notify((err as ApiError).message, 'error');
    }
  }

  private compareSelected(): void {
    if (this.selected.length === 2) {
      this.actions.compare(this.selected[0], this.selected[1]);
    }
  }
}
