// Two runs side by side on their shared held-out split, with the paired test of B against A.
import { Widget } from '@lumino/widgets';
import { ApiError, IRunRow, fmtCI, fmtDuration, fmtScore, fmtSigned, h, request, runTitle } from './api';

export class CompareView extends Widget {
  private aSel = h('select', { class: 'dspyopt-select', 'aria-label': 'run A' }) as HTMLSelectElement;
  private bSel = h('select', { class: 'dspyopt-select', 'aria-label': 'run B' }) as HTMLSelectElement;
  private out = h('div', { class: 'dspyopt-compare-out' });

  constructor(runs: () => IRunRow[], a?: string, b?: string) {
    super();
    this.id = 'dspyopt-compare';
    this.addClass('dspyopt-compare');
    this.title.label = 'Compare runs';
    this.title.closable = true;
    const done = runs().filter(r => r.status === 'finished' || r.status === 'stopped');
    for (const sel of [this.aSel, this.bSel]) {
      sel.replaceChildren(...done.map(r => h('option', { value: r.run_id, text: `${r.run_id.slice(0, 8)} · ${runTitle(r)} · ${fmtScore(r.optimized)}` })));
      sel.addEventListener('change', () => void this.compare());
    }
    if (a) {
      this.aSel.value = a;
    }
    this.bSel.value = b || (done[1] && done[1].run_id) || '';
    this.node.append(
      h('h2', { text: 'Compare two runs' }),
      h('p', { class: 'dspyopt-muted', text: 'Both optimized programs on the same held-out examples; the paired test says whether B is better than A.' }),
      h('div', { class: 'dspyopt-compare-pick' }, h('label', { text: 'A' }), this.aSel, h('label', { text: 'B' }), this.bSel),
      this.out);
    void this.compare();
  }

  set(a: string, b: string): void {
    this.aSel.value = a;
    this.bSel.value = b;
    void this.compare();
  }

  async compare(): Promise<void> {
    const a = this.aSel.value, b = this.bSel.value;
    if (!a || !b) {
      this.out.replaceChildren(h('div', { class: 'dspyopt-info', text: 'Pick two finished runs.' }));
      return;
    }
    this.out.replaceChildren(h('div', { class: 'dspyopt-muted', text: 'Comparing…' }));
    try {
      const d = await request('compare', {}, { a, b });
      const c = d.comparison;
      const row = (n: string, r: IRunRow) => h('tr', {}, h('th', { text: n }), h('td', {}, h('code', { text: r.run_id.slice(0, 8), title: r.run_id })), h('td', { text: runTitle(r) }), h('td', { text: r.status }),
        h('td', { text: fmtScore(r.baseline) }), h('td', {}, h('b', { text: fmtScore(r.optimized) })), h('td', { text: String(r.metric_calls ?? '–') }), h('td', { text: fmtDuration(r.wall_s) }));
      const verdict = c.significant ? (c.diff > 0 ? 'B is significantly better than A.' : 'B is significantly worse than A.') : 'No significant difference between A and B at this sample size.';
      this.out.replaceChildren(
        h('table', { class: 'dspyopt-table' },
          h('thead', {}, h('tr', {}, ...['', 'run', 'optimizer', 'status', 'baseline', 'optimized', 'metric calls', 'time'].map(t => h('th', { text: t })))),
          h('tbody', {}, row('A', d.a), row('B', d.b))),
        h('div', { class: 'dspyopt-verdict' },
          h('span', { class: 'dspyopt-big ' + (c.diff > 0 ? 'dspyopt-up' : c.diff < 0 ? 'dspyopt-down' : ''), text: fmtSigned(c.diff) }),
          h('span', { text: ` B − A on ${c.n} held-out examples, 95% CI ${fmtCI(c.ci)}, p = ${Number(c.p_value).toPrecision(2)} (${c.test}). ` }),
          h('b', { text: verdict })),
        h('details', {}, h('summary', { text: 'How this was tested' }), h('p', { text: c.why }), ...(c.notes || []).map((n: string) => h('p', { class: 'dspyopt-muted', text: n }))));
    } catch (err) {
      this.out.replaceChildren(h('div', { class: 'dspyopt-error', text: (err as ApiError).message }));
    }
  }
}
