// A run in a main-area tab: live progress (server-sent events over its events.jsonl), the held-out comparison,
// the trials chart, the candidates, and where the optimized program is.
import { Widget } from '@lumino/widgets';
import { ApiError, IRunEvent, follow, fmtCI, fmtCost, fmtDuration, fmtScore, fmtSigned, fmtWhen, h, post, request, runTitle, statusBadge } from './api';

interface IPoint {
  i: number;
  score: number;
  full: boolean;
  accepted: boolean;
  candidate: number;
  trial: number | null;
}

const SVGNS = 'http://www.w3.org/2000/svg';
function svg(tag: string, attrs: Record<string, any> = {}, text?: string): SVGElement {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}

/** Candidate scores in the order they were evaluated; filled dots for full validation, the best-so-far line. */
export function trialsChart(points: IPoint[], baseline: number | null): SVGElement {
  const W = 560, H = 220, L = 44, R = 12, T = 12, B = 34;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'dspyopt-chart', role: 'img', 'aria-label': 'candidate scores' });
  const n = Math.max(points.length, 1);
  const x = (i: number) => L + ((W - L - R) * (n === 1 ? 0.5 : i / (n - 1)));
  const y = (s: number) => T + (H - T - B) * (1 - s);
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg('line', { x1: L, x2: W - R, y1: y(s), y2: y(s), class: 'dspyopt-grid' }));
    root.append(svg('text', { x: L - 6, y: y(s) + 4, 'text-anchor': 'end', class: 'dspyopt-axis' }, s.toFixed(2)));
  }
  root.append(svg('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', class: 'dspyopt-axis' }, 'candidates, in the order they were scored'));
  if (baseline !== null) {
    root.append(svg('line', { x1: L, x2: W - R, y1: y(baseline), y2: y(baseline), class: 'dspyopt-baseline' }));
    root.append(svg('text', { x: W - R, y: y(baseline) - 4, 'text-anchor': 'end', class: 'dspyopt-axis' }, 'baseline (validation)'));
  }
  let best = -1;
  const path: string[] = [];
  points.forEach((p, i) => {
    if (p.full && p.score > best) {
      best = p.score;
    }
    if (best >= 0) {
      path.push(`${path.length ? 'L' : 'M'}${x(i).toFixed(1)},${y(best).toFixed(1)}`);
    }
  });
  if (path.length) {
    root.append(svg('path', { d: path.join(' '), class: 'dspyopt-best-line' }));
  }
  points.forEach((p, i) => {
    const c = svg('circle', { cx: x(i), cy: y(p.score), r: p.full ? 4 : 3, class: p.full ? 'dspyopt-dot-full' : 'dspyopt-dot-partial' });
    c.append(svg('title', {}, `candidate ${p.candidate}${p.trial !== null ? `, trial ${p.trial}` : ''}: ${p.score.toFixed(3)} ${p.full ? '(full validation)' : '(minibatch)'}`));
    root.append(c);
  });
  return root;
}

export class RunDetail extends Widget {
  private detail: any = null;
  private events: IRunEvent[] = [];
  private close_: (() => void) | null = null;
  private live = { phase: '', done: 0, total: 0, calls: 0, estimate: 0, best: null as number | null, status: '', tokens: 0, cost: 0 };
  private progressEl = h('div', { class: 'dspyopt-live' });
  private bodyEl = h('div', { class: 'dspyopt-detail-body' });
  private headEl = h('div', { class: 'dspyopt-detail-head' });
  private messageEl = h('div', { class: 'dspyopt-message' });
  private renderQueued = false;
  private stopBtn: HTMLButtonElement | null = null;
  private resumeBtn: HTMLButtonElement | null = null;

  constructor(readonly runId: string, private notify: (m: string, k?: 'error' | 'info') => void) {
    super();
    this.id = `dspyopt-run-${runId}`;
    this.addClass('dspyopt-detail');
    this.title.label = `Run ${runId.slice(0, 8)}`;
    this.title.closable = true;
    this.node.append(this.headEl, this.messageEl, this.progressEl, this.bodyEl);
    void this.load(true);
  }

  dispose(): void {
    if (this.close_) {
      this.close_();
    }
    super.dispose();
  }

  async load(follow_: boolean): Promise<void> {
    try {
      this.detail = await request(`runs/${encodeURIComponent(this.runId)}`);
    } catch (err) {
      this.bodyEl.replaceChildren(h('div', { class: 'dspyopt-error', text: (err as ApiError).message }));
      return;
    }
    const r = this.detail.run;
    this.title.label = `${r.optimizer || 'run'} ${this.runId.slice(0, 8)}`;
    this.title.caption = `${runTitle(r)} — run ${r.run_id}`;
    this.live.status = r.status;
    this.live.estimate = r.estimated_metric_calls || this.live.estimate;
    if (follow_ && r.run_dir && (this.detail.events || !this.detail.result) && !this.close_) {
      this.events = [];
      this.close_ = follow(`runs/${encodeURIComponent(this.runId)}/events`, { since: '0' }, {
        open: () => undefined,
        end: () => {
          this.closeStream();
          void this.load(false);
        },
        ...Object.fromEntries(['run_started', 'candidate', 'eval_progress', 'budget', 'best', 'finished', 'notice', 'error', 'trial_finished'].map(k => [k, (e: IRunEvent) => this.onEvent(e)])),
        error: (state: number) => {
          if (state === 2) {
            this.closeStream();
          }
        }
      });
    }
    this.render();
  }

  private closeStream(): void {
    if (this.close_) {
      this.close_();
      this.close_ = null;
    }
  }

  private onEvent(e: IRunEvent): void {
    this.events.push(e);
    const L = this.live;
    switch (e.kind) {
      case 'run_started':
        L.estimate = e.max_metric_calls || (e.estimate && e.estimate.metric_calls) || L.estimate;
        L.status = 'running';
        L.best = null;
        break;
      case 'eval_progress':
        L.phase = e.phase;
        break;
      case 'budget':
        L.calls = e.metric_calls;
        L.tokens = e.tokens;
        L.cost = e.cost;
        break;
      case 'best':
        L.best = e.score;
        break;
      case 'finished':
        L.status = e.status;
        L.phase = e.status;
        break;
    }
    if (!this.renderQueued) {
      this.renderQueued = true;
      requestAnimationFrame(() => {
        this.renderQueued = false;
        this.renderLive();
        this.renderChart();
      });
    }
  }

  private percent(): number {
    const L = this.live;
    if (['finished', 'stopped', 'failed'].includes(L.status) && this.detail && this.detail.result) {
      return 100;
    }
    if (!L.estimate) {
      return 0;
    }
    return Math.min(99, Math.floor((100 * L.calls) / L.estimate));
  }

  private renderLive(): void {
    const L = this.live;
    const pct = this.percent();
    const running = L.status === 'running';
    this.progressEl.replaceChildren(
      h('div', { class: 'dspyopt-live-line' },
        h('div', { class: 'dspyopt-bar dspyopt-bar-big' }, h('div', { class: `dspyopt-bar-fill${running ? ' dspyopt-bar-live' : ''}`, style: { width: `${pct}%` } })),
        h('span', { class: 'dspyopt-progress-text', text: `${pct}%` }),
        h('span', { class: 'dspyopt-phase', text: L.phase || L.status })),
      h('div', { class: 'dspyopt-live-stats' },
        h('span', { text: `${L.calls} of about ${L.estimate || '?'} metric calls` }),
        h('span', { text: `best on validation ${fmtScore(L.best)}` }),
        h('span', { text: `${L.tokens.toLocaleString()} tokens` }),
        h('span', { text: fmtCost(L.cost) })));
    const badge = this.headEl.querySelector('.dspyopt-badge');
    if (badge && this.detail && this.detail.result === null && L.status) {
      badge.replaceWith(statusBadge(L.status));
      if (this.stopBtn && this.resumeBtn) {
        this.stopBtn.disabled = !running;
        this.resumeBtn.disabled = running || L.status === 'finished';
      }
      const note = this.bodyEl.querySelector('.dspyopt-no-result');
      if (note && running) {
        note.remove();
      }
    }
  }

  private points(): IPoint[] {
    const evs = this.events.filter(e => e.kind === 'candidate');
    if (evs.length) {
      return evs.map((e, i) => ({ i, score: e.score, full: e.full, accepted: e.accepted, candidate: e.candidate, trial: e.trial }));
    }
    const cands = (this.detail && this.detail.result && this.detail.result.candidates) || [];
    return cands.map((c: any, i: number) => ({ i, score: c.score, full: c.full, accepted: false, candidate: c.id, trial: c.trial }));
  }

  private renderChart(): void {
    const holder = this.bodyEl.querySelector('.dspyopt-chart-holder');
    if (!holder) {
      return;
    }
    const pts = this.points();
    const base = pts.length ? pts[0].score : null;
    holder.replaceChildren(pts.length ? trialsChart(pts, base) : h('div', { class: 'dspyopt-muted', text: 'No candidate scored yet.' }));
  }

  private async act(action: 'stop' | 'resume'): Promise<void> {
    try {
      await post(`runs/${encodeURIComponent(this.runId)}/${action}`);
      if (action === 'stop') {
        this.messageEl.replaceChildren(h('div', { class: 'dspyopt-info', text: 'Stopping: the run ends after the current call with its best program so far, then is tested on the held-out split.' }));
      } else {
        this.messageEl.replaceChildren();
        this.closeStream();
        window.setTimeout(() => void this.load(true), 300);
      }
    } catch (err) {
      this.messageEl.replaceChildren(h('div', { class: 'dspyopt-error', text: (err as ApiError).message }));
      this.notify((err as ApiError).message, 'error');
    }
  }

  private render(): void {
    const d = this.detail;
    const r = d.run;
    const res = d.result;
    const status = res ? res.status : this.live.status || r.status;
    const running = status === 'running' || (!res && d.executing);
    const stopBtn = h('button', { class: 'dspyopt-btn dspyopt-stop', title: 'End the run after the current call, with its best program so far', onclick: () => void this.act('stop') }, 'Stop') as HTMLButtonElement;
    stopBtn.disabled = !running;
    this.stopBtn = stopBtn;
    const resumeBtn = h('button', { class: 'dspyopt-btn dspyopt-resume', title: 'Run it again with the same settings; finished calls come back from the cache', onclick: () => void this.act('resume') }, 'Resume') as HTMLButtonElement;
    resumeBtn.disabled = running || status === 'finished';
    this.resumeBtn = resumeBtn;
    this.headEl.replaceChildren(
      h('div', { class: 'dspyopt-detail-title' }, statusBadge(status), h('h2', { text: runTitle(r) }), h('span', { class: 'dspyopt-actions' }, stopBtn, resumeBtn)),
      h('div', { class: 'dspyopt-detail-sub' },
        h('span', {}, 'run ', h('code', { text: r.run_id })),
        h('span', { text: `model ${r.lm || '?'}` }),
        h('span', { text: `started ${fmtWhen(r.started)}` }),
        res && res.message ? h('span', { class: 'dspyopt-muted', text: res.message }) : null));
    const sections: HTMLElement[] = [];
    if (res) {
      this.messageEl.replaceChildren();  // "Stopping…" is over once the result is here
      sections.push(this.comparisonSection(res));
    } else if (!running) {
      sections.push(h('div', { class: 'dspyopt-info dspyopt-no-result', text: `This run has no result (${status}): its process ended before it finished. Resume runs it again; finished calls come back from the cache.` }));
    }
    sections.push(h('section', {}, h('h3', { text: 'Candidates' }), h('div', { class: 'dspyopt-chart-holder' })));
    if (res && res.candidates.length) {
      sections.push(this.candidatesTable(res));
    }
    if (d.program) {
      sections.push(this.programSection(d.program));
    }
    sections.push(this.settingsSection(d, res));
    if (res && res.notices && res.notices.length) {
      sections.push(h('section', {}, h('h3', { text: 'Notices' }), ...res.notices.map((n: string) => h('div', { class: 'dspyopt-info', text: n }))));
    }
    this.bodyEl.replaceChildren(...sections);
    if (res && !this.events.length) {
      this.live.status = res.status;
      this.live.calls = (res.usage && res.usage.metric_calls) || 0;
      this.live.estimate = this.live.estimate || this.live.calls;
      this.live.tokens = ((res.usage && res.usage.input_tokens) || 0) + ((res.usage && res.usage.output_tokens) || 0);
      this.live.cost = (res.usage && res.usage.cost) || 0;
      this.live.phase = res.status;
    }
    if (res) {
      this.live.status = res.status;
      this.live.phase = res.status;
    }
    this.renderLive();
    this.renderChart();
  }

  private comparisonSection(res: any): HTMLElement {
    const c = res.comparison || {};
    const bar = (label: string, v: number | null, cls: string) =>
      h('div', { class: 'dspyopt-hbar' }, h('span', { class: 'dspyopt-hbar-label', text: label }),
        h('div', { class: 'dspyopt-hbar-track' }, h('div', { class: `dspyopt-hbar-fill ${cls}`, style: { width: `${Math.round(100 * (v || 0))}%` } })),
        h('b', { text: fmtScore(v) }));
    const verdict = c.p_value === undefined || c.p_value === null ? '' : c.significant ? 'a significant improvement' : c.diff > 0 ? 'better, but not significant at this sample size' : 'no improvement';
    return h('section', { class: 'dspyopt-comparison' },
      h('h3', { text: `Held-out test (${c.n || res.baseline_n || '?'} examples)` }),
      bar('baseline', res.baseline, 'dspyopt-fill-base'),
      bar('optimized', res.optimized, 'dspyopt-fill-opt'),
      h('p', {},
        h('b', { class: c.diff > 0 ? 'dspyopt-up' : c.diff < 0 ? 'dspyopt-down' : '', text: `${fmtSigned(c.diff)} ` }),
        h('span', { text: `95% CI ${fmtCI(c.ci)}, p = ${c.p_value !== undefined && c.p_value !== null ? Number(c.p_value).toPrecision(2) : '–'} (${c.test || 'paired test'}): ${verdict}.` })),
      c.why ? h('details', {}, h('summary', { text: 'How this was tested' }), h('p', { text: c.why }), ...(c.notes || []).map((n: string) => h('p', { class: 'dspyopt-muted', text: n }))) : null);
  }

  private candidatesTable(res: any): HTMLElement {
    const rows = [...res.candidates].sort((a: any, b: any) => (b.full ? 1 : 0) - (a.full ? 1 : 0) || b.score - a.score).slice(0, 50);
    return h('section', {}, h('details', { open: res.candidates.length <= 12 },
      h('summary', { text: `${res.candidates.length} candidate${res.candidates.length === 1 ? '' : 's'} (best first${res.candidates.length > 50 ? ', first 50' : ''})` }),
      h('table', { class: 'dspyopt-table' },
        h('thead', {}, h('tr', {}, ...['id', 'trial', 'score', 'on', 'demos', 'instructions'].map(t => h('th', { text: t })))),
        h('tbody', {}, ...rows.map((c: any) => h('tr', { class: c.id === res.best ? 'dspyopt-best-row' : '' },
          h('td', { text: String(c.id) + (c.id === res.best ? ' ★' : '') }),
          h('td', { text: c.trial === null ? '–' : String(c.trial) }),
          h('td', { text: fmtScore(c.score) }),
          h('td', { text: `${c.n}${c.full ? ' (full)' : ''}` }),
          h('td', { text: String(c.n_demos || 0) }),
          h('td', { class: 'dspyopt-instr', text: Object.values(c.instructions || {}).join(' | ') || '–', title: Object.values(c.instructions || {}).join('\n\n') })))))));
  }

  private programSection(p: any): HTMLElement {
    const copy = (text: string) => h('button', { class: 'dspyopt-link', title: 'Copy', onclick: () => void navigator.clipboard.writeText(text) }, 'copy');
    return h('section', { class: 'dspyopt-program' }, h('h3', { text: 'Where the optimized program is' }),
      h('dl', {},
        p.path ? h('dt', { text: 'file' }) : null, p.path ? h('dd', {}, h('code', { text: p.path }), ' ', copy(p.path)) : null,
        h('dt', { text: 'in Python' }), h('dd', {}, h('code', { text: `from dspyopt_nb import load_run; ${p.load}` }), ' ', copy(`from dspyopt_nb import load_run\n${p.load}`)),
        p.mlflow_run_id ? h('dt', { text: 'MLflow run' }) : null, p.mlflow_run_id ? h('dd', {}, h('code', { text: p.mlflow_run_id })) : null,
        p.model_version ? h('dt', { text: 'registered' }) : null, p.model_version ? h('dd', { text: String(p.model_version) }) : null));
  }

  private settingsSection(d: any, res: any): HTMLElement {
    const cfg = d.config || {};
    const keys = Object.keys(cfg).filter(k => cfg[k] !== null && !(typeof cfg[k] === 'object' && !Object.keys(cfg[k]).length));
    const u = (res && res.usage) || {};
    const e = d.estimate || {};
    return h('section', {}, h('details', {}, h('summary', { text: 'Settings, estimate and usage' }),
      h('table', { class: 'dspyopt-table dspyopt-kv' }, h('tbody', {}, ...keys.map(k => h('tr', {}, h('th', { text: k }), h('td', { text: typeof cfg[k] === 'object' ? JSON.stringify(cfg[k]) : String(cfg[k]) }))))),
      h('table', { class: 'dspyopt-table' },
        h('thead', {}, h('tr', {}, h('th', { text: '' }), h('th', { text: 'estimated' }), h('th', { text: 'used' }))),
        h('tbody', {},
          h('tr', {}, h('th', { text: 'metric calls' }), h('td', { text: String(e.metric_calls ?? '–') }), h('td', { text: String(u.metric_calls ?? '–') })),
          h('tr', {}, h('th', { text: 'LM calls' }), h('td', { text: String(e.lm_calls ?? '–') }), h('td', { text: String(u.lm_calls ?? '–') })),
          h('tr', {}, h('th', { text: 'cost' }), h('td', { text: e.cost === null || e.cost === undefined ? 'unpriced' : fmtCost(e.cost) }), h('td', { text: fmtCost(u.cost) })),
          h('tr', {}, h('th', { text: 'time' }), h('td', { text: fmtDuration(e.seconds) }), h('td', { text: fmtDuration(u.wall_s) }))))));
  }
}
