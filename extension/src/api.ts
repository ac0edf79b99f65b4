// The panel's client of the server extension (dspyopt_nb.notebook.server): JSON routes and server-sent events.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IRunRow {
  run_id: string;
  name: string;
  run_dir: string | null;
  optimizer: string | null;
  preset: string | null;
  lm: string | null;
  task: string | null;
  status: string;
  started: number | null;
  finished: number | null;
  baseline: number | null;
  optimized: number | null;
  diff: number | null;
  ci: number[] | null;
  p_value: number | null;
  cost: number | null;
  wall_s: number | null;
  metric_calls: number | null;
  estimated_metric_calls: number | null;
  best: number | null;
  progress: number | null;
  mlflow_run_id: string | null;
  source: string;
}

export interface IRunEvent {
  kind: string;
  seq: number;
  t: number;
  [key: string]: any;
}

/** A refusal of the server: its status, its message (ending in "Fix: ..."), and per-field problems. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly problems: string[][] = []
  ) {
    super(message);
  }
}

const settings = () => ServerConnection.makeSettings();

export function apiUrl(path: string, query: Record<string, string> = {}): string {
  const s = settings();
  const q = { ...query };
  if (s.token) {
    q.token = s.token;
  }
  const qs = Object.keys(q)
    .map(k => `${encodeURIComponent(k)}=${encodeURIComponent(q[k])}`)
    .join('&');
  return URLExt.join(s.baseUrl, 'dspyopt/api', path) + (qs ? `?${qs}` : '');
}

/** Call a JSON route; an answer that is not 2xx becomes an ApiError with the server's message. */
export async function request<T = any>(path: string, init: RequestInit = {}, query: Record<string, string> = {}): Promise<T> {
  const s = settings();
  const qs = Object.keys(query)
    .map(k => `${encodeURIComponent(k)}=${encodeURIComponent(query[k])}`)
    .join('&');
  const url = URLExt.join(s.baseUrl, 'dspyopt/api', path) + (qs ? `?${qs}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, s);
  } catch (err) {
    throw new ApiError(0, `The Jupyter server did not answer (${err}). Fix: check that it is running.`);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = { message: text };
  }
  if (!response.ok) {
    const message = (data && data.message) || `HTTP ${response.status}`;
    const fix = response.status === 404 && !(data && data.message) ? ' Fix: install dspyopt in the environment of this Jupyter server and restart it.' : '';
    throw new ApiError(response.status, message + fix, (data && data.problems) || []);
  }
  return data as T;
}

export const post = <T = any>(path: string, body: any = {}) => request<T>(path, { method: 'POST', body: JSON.stringify(body) });

/** Follow a server-sent-events route; returns a function that closes it. */
export function follow(path: string, query: Record<string, string>, handlers: Record<string, (data: any) => void>): () => void {
  const source = new EventSource(apiUrl(path, query));
  for (const name of Object.keys(handlers)) {
    if (name === 'error') {
      continue;
    }
    source.addEventListener(name, (msg: MessageEvent) => {
      try {
        handlers[name](JSON.parse(msg.data));
      } catch (err) {
        console.error('dspyopt: bad event', name, err);
      }
    });
  }
  source.onerror = () => {
    if (handlers.error) {
      handlers.error(source.readyState);
    }
  };
  return () => source.close();
}

// ---- formatting shared by the views
export const fmtScore = (v: number | null | undefined, digits = 3) => (v === null || v === undefined ? '–' : v.toFixed(digits));
export const fmtSigned = (v: number | null | undefined, digits = 3) => (v === null || v === undefined ? '–' : (v >= 0 ? '+' : '') + v.toFixed(digits));
export const fmtCost = (v: number | null | undefined) => (v === null || v === undefined ? '–' : `$${v < 0.01 ? v.toFixed(4) : v.toFixed(2)}`);
export function fmtDuration(s: number | null | undefined): string {
  if (s === null || s === undefined) {
    return '–';
  }
  if (s < 60) {
    return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
export function fmtWhen(t: number | null | undefined): string {
  if (!t) {
    return '–';
  }
  const d = new Date(t * 1000);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
export function fmtCI(ci: number[] | null | undefined): string {
  return ci && ci.length === 2 ? `[${fmtSigned(ci[0])}, ${fmtSigned(ci[1])}]` : '';
}

/** A small DOM builder: h('div', {class: 'x'}, child, 'text'). */
export function h(tag: string, attrs: Record<string, any> = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) {
      continue;
    }
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'text') {
      el.textContent = v;
    } else if (k === 'style' && typeof v === 'object') {
      Object.assign(el.style, v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `dspyopt-badge dspyopt-status-${status}`, text: status, title: `status: ${status}` });
}

export function runTitle(r: IRunRow): string {
  return `${r.optimizer || '?'}/${r.preset || '?'}${r.task ? ' on ' + r.task : ''}`;
}
