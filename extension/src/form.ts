// Start a run: a form built from RunConfig's fields, or a YAML config (the same settings a job or %%dspyopt takes).
import { Widget } from '@lumino/widgets';
import { ApiError, h, post, request } from './api';

export class RunForm extends Widget {
  private schema: any = null;
  private mode: 'form' | 'yaml' = 'form';
  private inputs: Record<string, HTMLInputElement | HTMLSelectElement> = {};
  private yamlEl = h('textarea', { class: 'dspyopt-yaml', spellcheck: 'false', rows: '14', 'aria-label': 'YAML config' }) as HTMLTextAreaElement;
  private errorEl = h('div', { class: 'dspyopt-form-errors', role: 'alert' });
  private formEl = h('div', { class: 'dspyopt-form-grid' });
  private startBtn = h('button', { class: 'dspyopt-btn dspyopt-primary dspyopt-start' }, 'Start run') as HTMLButtonElement;
  private tabs: HTMLElement[] = [];

  constructor(private onStarted: (runId: string) => void) {
    super();
    this.id = 'dspyopt-new-run';
    this.addClass('dspyopt-form');
    this.title.label = 'New dspyopt run';
    this.title.closable = true;
    const tab = (mode: 'form' | 'yaml', label: string) => h('button', { class: 'dspyopt-tab', role: 'tab', 'data-mode': mode, onclick: () => this.setMode(mode) }, label);
    this.tabs = [tab('form', 'Form'), tab('yaml', 'YAML config')];
    this.startBtn.addEventListener('click', () => void this.start());
    this.node.append(
      h('h2', { text: 'Start an optimization run' }),
      h('p', { class: 'dspyopt-muted', text: 'The run plans at once (its id is known before any model call), then executes in the background of the Jupyter server. Follow it in the dspyopt panel.' }),
      h('div', { class: 'dspyopt-tabs', role: 'tablist' }, ...this.tabs),
      this.formEl,
      h('div', { class: 'dspyopt-yaml-holder' }, this.yamlEl, h('p', { class: 'dspyopt-muted', text: 'Any RunConfig setting, one “key: value” per line — the same file `dspyopt run config.yaml` and jobs take.' })),
      this.errorEl,
      h('div', { class: 'dspyopt-form-actions' }, this.startBtn));
    this.setMode('form');
    void this.loadSchema();
  }

  private async loadSchema(): Promise<void> {
    try {
      this.schema = await request('schema');
    } catch (err) {
      this.errorEl.replaceChildren(h('div', { class: 'dspyopt-error', text: (err as ApiError).message }));
      return;
    }
    const s = this.schema;
    const f = s.fields;
    const field = (name: string, input: HTMLInputElement | HTMLSelectElement, hint?: string) => {
      input.name = name;
      input.id = `dspyopt-field-${name}`;
      this.inputs[name] = input;
      return h('div', { class: 'dspyopt-field', 'data-field': name },
        h('label', { for: input.id, text: name.replace(/_/g, ' ') }), input,
        h('div', { class: 'dspyopt-hint', text: hint || (f[name] && f[name].description) || '' }),
        h('div', { class: 'dspyopt-field-error' }));
    };
    const select = (opts: [string, string][], value: string) => {
      const el = h('select', { class: 'dspyopt-select' }, ...opts.map(([v, l]) => h('option', { value: v, text: l }))) as HTMLSelectElement;
      el.value = value;
      return el;
    };
    const input = (type: string, value: any, placeholder = '') => {
      const el = h('input', { class: 'dspyopt-input', type, placeholder }) as HTMLInputElement;
      if (type === 'checkbox') {
        el.checked = !!value;
      } else if (value !== null && value !== undefined) {
        el.value = String(value);
      }
      return el;
    };
    this.formEl.replaceChildren(
      field('task', select(Object.entries(s.tasks).map(([k, d]) => [k, `${k} — ${d}`] as [string, string]), 'sst2')),
      field('optimizer', select(s.optimizers.map((o: string) => [o, o] as [string, string]), s.optimizers.includes('bootstrap') ? 'bootstrap' : s.optimizers[0])),
      field('preset', select(s.presets.map((p: string) => [p, p] as [string, string]), 'light')),
      field('lm', input('text', f.lm.default, "local, openai/gpt-4o-mini, scripted:module:function")),
      field('n_train', input('number', f.n_train.default)),
      field('n_val', input('number', f.n_val.default)),
      field('n_test', input('number', f.n_test.default)),
      field('max_metric_calls', input('number', null, 'no cap')),
      field('seed', input('number', f.seed.default)),
      field('tracking', input('checkbox', true), 'log the run to MLflow'));
    for (const el of Object.values(this.inputs)) {
      el.addEventListener('change', () => {
        if (this.mode === 'form') {
          this.yamlEl.value = this.toYaml();
        }
      });
    }
    if (!this.yamlEl.value.trim()) {
      this.yamlEl.value = this.toYaml();  // never over what the user typed while the schema was loading
    }
  }

  private setMode(mode: 'form' | 'yaml'): void {
    if (mode === 'yaml' && this.schema) {
      this.yamlEl.value = this.yamlEl.value || this.toYaml();
    }
    if (mode !== this.mode) {
      this.errorEl.replaceChildren();  // an error of the other tab's settings would mislead here
    }
    this.mode = mode;
    this.node.classList.toggle('dspyopt-mode-yaml', mode === 'yaml');
    for (const t of this.tabs) {
      t.classList.toggle('dspyopt-tab-active', t.dataset.mode === mode);
      t.setAttribute('aria-selected', String(t.dataset.mode === mode));
    }
  }

  /** The form's settings (only what differs from the defaults, plus the task). */
  settings(): Record<string, any> {
    const out: Record<string, any> = {};
    for (const [name, el] of Object.entries(this.inputs)) {
      const def = this.schema.fields[name] ? this.schema.fields[name].default : null;
      let v: any;
      if (el instanceof HTMLInputElement && el.type === 'checkbox') {
        v = el.checked;
      } else if (el instanceof HTMLInputElement && el.type === 'number') {
        v = el.value === '' ? null : Number(el.value);
      } else {
        v = el.value.trim() || null;
      }
      if (name === 'task' || (v !== def && v !== null)) {
        out[name] = v;
      }
    }
    return out;
  }

  private toYaml(): string {
    if (!this.schema) {
      return '';
    }
    return Object.entries(this.settings()).map(([k, v]) => `${k}: ${typeof v === 'string' && /[:#]/.test(v) ? JSON.stringify(v) : v}`).join('\n') + '\n';
  }

  /** Fill the form (e.g. from a command's arguments) and switch to YAML when given text. */
  setYaml(text: string): void {
    this.yamlEl.value = text;
    this.setMode('yaml');
  }

  private async start(): Promise<void> {
    this.errorEl.replaceChildren();
    for (const el of Array.from(this.node.querySelectorAll('.dspyopt-field-error'))) {
      el.textContent = '';
    }
    this.startBtn.disabled = true;
    this.startBtn.textContent = 'Planning…';
    try {
      const body = this.mode === 'yaml' ? { yaml: this.yamlEl.value } : { config: this.settings() };
      const started = await post('runs', body);
      this.errorEl.replaceChildren(h('div', { class: 'dspyopt-info', text: `Started run ${started.run_id}: ${started.plan}` }));
      this.onStarted(started.run_id);
    } catch (err) {
      const e = err as ApiError;
      const problems = e.problems || [];
      let shown = false;
      for (const [field, message] of problems) {
        const slot = this.mode === 'form' ? this.node.querySelector(`[data-field="${field}"] .dspyopt-field-error`) : null;
        if (slot) {
          slot.textContent = message;
          shown = true;
        }
      }
      this.errorEl.replaceChildren(h('div', { class: 'dspyopt-error', text: shown ? 'The run cannot start: see the fields marked below.' : e.message }),
        ...(shown || !problems.length ? [] : []));
      if (shown) {
        this.errorEl.append(h('pre', { class: 'dspyopt-error-detail', text: e.message }));
      }
    } finally {
      this.startBtn.disabled = false;
      this.startBtn.textContent = 'Start run';
    }
  }
}
