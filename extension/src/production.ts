// The production sections of the dspyopt panel: the runtime's experiments and the learner's drift alarms
// (routes of dspyopt_nb.learn.panel), refreshed every few seconds while the panel is shown.
import { Widget } from '@lumino/widgets';
import { ApiError, fmtCI, fmtScore, fmtSigned, fmtWhen, h, request } from './api';

const REFRESH_MS = 5000;

/** A panel section that reloads its data every few seconds while it is visible. */
abstract class LiveSection extends Widget {
  private timer = 0;
  protected body: HTMLElement;

  constructor(label: string, cls: string) {
    super();
    this.addClass('dspyopt-section');
    this.addClass(cls);
    this.title.label = label;
    this.body = h('div', { class: 'dspyopt-list', role: 'list' });
    this.node.append(this.body);
  }

  /** Start reloading (the panel calls it once it is first shown). */
  connect(): void {
    if (!this.timer) {
      void this.refresh();
      this.timer = window.setInterval(() => {
        if (this.isVisible) {
          void this.refresh();
        }
      }, REFRESH_MS);
    }
  }

  async refresh(): Promise<void> {
    try {
      this.show_(await this.load());
    } catch (err) {
      this.body.replaceChildren(h('div', { class: 'dspyopt-error dspyopt-pad', text: (err as ApiError).message }));
    }
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }

  protected abstract load(): Promise<any>;
  protected abstract show_(data: any): void;
}

const pct = (v: number) => `${Math.round(v * 100)}%`;
/** A registry version reads 'v3'; an in-process variant's name stays as it is. */
const ver = (v: any) => (v === null || v === undefined ? '?' : /^\d+$/.test(String(v)) ? `v${v}` : String(v));

/** Experiments: status, stage, allocation and the leading treatment's difference with its interval. */
export class ExperimentsSection extends LiveSection {
  constructor(private openExperiment: (id: string) => void) {
    super('Experiments', 'dspyopt-experiments');
  }

  protected load() {
    return request('experiments');
  }

  protected show_(data: any): void {
    const rows: any[] = data.experiments || [];
    if (!rows.length) {
      this.body.replaceChildren(h('div', { class: 'dspyopt-empty', text: 'No experiments yet. Serve a program (dspyopt serve) and start one with POST /v1/experiments; it shows here with its allocation and lift.' }));
      return;
    }
    this.body.replaceChildren(...rows.map(e => this.row(e)));
  }

  private row(e: any): HTMLElement {
    const alloc = Object.entries(e.weights || {}).map(([k, v]) => `${k} ${pct(v as number)}`).join(' · ');
    const units = Object.values(e.units || {}).reduce((a: number, b) => a + (b as number), 0);
    const lead = e.lead;
    const lift = lead
      ? h('span', { class: 'dspyopt-lift ' + (lead.significant ? (lead.diff > 0 ? 'dspyopt-up' : 'dspyopt-down') : ''), title: `${lead.variant} minus ${e.control} on ${e.metric}` },
          `${lead.variant} ${fmtSigned(lead.diff)} `, h('span', { class: 'dspyopt-ci', text: fmtCI(lead.ci) }))
      : h('span', { class: 'dspyopt-muted', text: 'no outcome yet' });
    const warn = e.srm_mismatch || (e.breaches || []).length
      ? h('div', { class: 'dspyopt-error', text: e.srm_mismatch ? 'sample ratio mismatch' : `guardrail breached: ${e.breaches.map((g: any) => g.metric).join(', ')}` })
      : null;
    return h('div', { class: 'dspyopt-row dspyopt-exp-row', role: 'listitem', 'data-experiment': e.id, title: 'Open the experiment', onclick: () => this.openExperiment(e.id) },
      h('div', { class: 'dspyopt-row-head' },
        h('span', { class: `dspyopt-badge dspyopt-status-${e.status}`, text: e.status }),
        h('span', { class: 'dspyopt-row-title', text: `${e.id}` }),
        h('span', { class: 'dspyopt-muted dspyopt-id', text: e.program })),
      h('div', { class: 'dspyopt-row-meta' }, `stage ${e.stage} · ${alloc} · ${units} units`),
      h('div', { class: 'dspyopt-row-meta' }, lift),
      warn);
  }
}

/** Drift alarms of every program a learner watches, with its production version and re-optimizations. */
export class AlarmsSection extends LiveSection {
  constructor() {
    super('Drift alarms', 'dspyopt-alarms');
  }

  protected load() {
    return request('alarms');
  }

  protected show_(data: any): void {
    const progs: any[] = data.programs || [];
    if (!progs.length) {
      this.body.replaceChildren(h('div', { class: 'dspyopt-empty', text: 'No program is watched yet. Start a learner (dspyopt learn run) and its drift alarms show here.' }));
      return;
    }
    this.body.replaceChildren(...progs.map(p => this.program(p)));
  }

  private program(p: any): HTMLElement {
    const open = (p.alarms || []).filter((a: any) => a.status === 'open').length;
    const alarms = (p.alarms || []).slice(0, 5).map((a: any) =>
      h('div', { class: 'dspyopt-row-meta dspyopt-alarm', 'data-alarm': a.id },
        h('span', { class: `dspyopt-badge dspyopt-status-${a.status === 'open' ? 'failed' : 'finished'}`, text: a.status }),
        ` ${a.signal} · ${a.detector} on ${ver(a.version)} · effect ${fmtScore(a.effect_size, 2)}${a.p_value !== null && a.p_value !== undefined ? ` · p ${a.p_value.toPrecision(2)}` : ''} · ${fmtWhen(a.at_ts || a.created)}`));
    const last = (p.triggers || [])[0];
    return h('div', { class: 'dspyopt-row', role: 'listitem', 'data-program': p.program },
      h('div', { class: 'dspyopt-row-head' },
        h('span', { class: 'dspyopt-row-title', text: p.program }),
        p.production ? h('span', { class: 'dspyopt-muted dspyopt-id', text: `production ${ver(p.production)}` }) : null),
      h('div', { class: 'dspyopt-row-meta' }, `${open} open alarm${open === 1 ? '' : 's'} of ${(p.alarms || []).length}` + (last ? ` · last re-optimization ${last.status}` : '')),
      ...alarms);
  }
}

/** One experiment in a main-area tab: arms with their outcome and interval, tests, guardrails, decisions. */
export class ExperimentView extends Widget {
  private timer = 0;

  constructor(readonly experimentId: string) {
    super();
    this.addClass('dspyopt-detail');
    this.addClass('dspyopt-experiment');
    this.title.label = `Experiment ${experimentId}`;
    this.title.closable = true;
    void this.refresh();
    this.timer = window.setInterval(() => this.isVisible && void this.refresh(), REFRESH_MS);
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }

  async refresh(): Promise<void> {
    try {
      this.render(await request(`experiments/${encodeURIComponent(this.experimentId)}`));
    } catch (err) {
      this.node.replaceChildren(h('div', { class: 'dspyopt-error dspyopt-pad', text: (err as ApiError).message }));
    }
  }

  private render(d: any): void {
    const e = d.experiment, an = d.analysis, spec = e.spec || {};
    const control = spec.control || (spec.variants || [])[0]?.name;
    const arms = Object.entries(an.arms || {}) as [string, any][];
    const max = Math.max(1e-9, ...arms.map(([, a]) => Math.abs(a.outcome ?? 0)));
    const armRows = arms.map(([name, a]) => {
      const t = (an.tests || {})[name] || {};
      const seq = t.sequential || {};
      return h('tr', {},
        h('td', { text: name + (name === control ? ' (control)' : '') }),
        h('td', { text: ver(a.version) }),
        h('td', { text: pct((e.weights || {})[name] || 0) }),
        h('td', { text: String(a.units) }),
        h('td', {}, h('div', { class: 'dspyopt-hbar-track', title: fmtScore(a.outcome) }, h('div', { class: 'dspyopt-hbar-fill dspyopt-fill-opt', style: { width: `${Math.round(100 * Math.abs(a.outcome ?? 0) / max)}%` } }))),
        h('td', { text: fmtScore(a.outcome) }),
        h('td', { text: name === control ? '' : `${fmtSigned(seq.diff)} ${fmtCI(seq.ci)}` }),
        h('td', { text: name === control || seq.p_value === undefined ? '' : seq.p_value.toPrecision(2) }),
        h('td', { text: name === control || !t.bayes ? '' : pct(t.bayes.chance_to_win) }),
        h('td', { text: a.error_rate === undefined ? '' : pct(a.error_rate) }),
        h('td', { text: a.latency_p95_ms === undefined ? '' : `${a.latency_p95_ms.toFixed(1)} ms` }));
    });
    const guard = (an.guardrails || []).map((g: any) =>
      h('tr', { class: g.breached ? 'dspyopt-down' : '' }, h('td', { text: g.variant }), h('td', { text: g.metric }), h('td', { text: g.breached ? 'breached' : 'holds' }), h('td', { text: g.reason })));
    const decisions = (d.decisions || []).slice().reverse().map((x: any) =>
      h('tr', {}, h('td', { text: fmtWhen(x.ts) }), h('td', { text: x.kind }), h('td', { text: x.reason })));
    const srm = an.srm || {};
    const parts: (HTMLElement | null)[] = [
      h('div', { class: 'dspyopt-detail-title' }, h('h2', { text: `Experiment ${e.id}` }), h('span', { class: `dspyopt-badge dspyopt-status-${e.status}`, text: e.status })),
      h('div', { class: 'dspyopt-detail-sub' },
        h('span', { text: `program ${e.program}` }), h('span', { text: `stage ${e.stage_name}` }), h('span', { text: `metric ${spec.metric}` }),
        h('span', { text: `unit ${spec.unit}` }), e.winner ? h('span', { text: `winner ${e.winner}` }) : null, h('span', { text: `started ${fmtWhen(e.created)}` })),
      srm.mismatch ? h('div', { class: 'dspyopt-error', text: `Sample ratio mismatch (p ${Number(srm.p_value).toPrecision(2)}): the assignment is off; the rollout will not promote.` }) : null,
      h('h3', { text: 'Arms' }),
      h('table', { class: 'dspyopt-table dspyopt-arms' },
        h('thead', {}, h('tr', {}, ...['variant', 'version', 'traffic', 'units', '', spec.metric || 'outcome', 'difference [CI]', 'p', 'chance to win', 'errors', 'p95 latency'].map(x => h('th', { text: x })))),
        h('tbody', {}, ...armRows)),
      h('h3', { text: 'Guardrails' }),
      guard.length ? h('table', { class: 'dspyopt-table' }, h('tbody', {}, ...guard)) : h('div', { class: 'dspyopt-muted', text: 'none declared' }),
      h('h3', { text: 'Decisions' }),
      h('table', { class: 'dspyopt-table dspyopt-decisions' }, h('tbody', {}, ...decisions))];
    this.node.replaceChildren(...parts.filter((x): x is HTMLElement => x !== null));
  }
}
