"""Many concurrent optimizations on local Ray against the loopback fake LM server at a fixed latency: LM calls per second
against the ideal (concurrency / latency), memory per concurrent optimization, scheduler overhead, and the CPU-bound
ceiling at zero latency (calls per second per core), with the lean HTTP engine's and litellm's client CPU per call.

    python benchmarks/concurrency.py                       # 1, 10, 100, 1000, 2000 at 2 s per call (~10 min)
    python benchmarks/concurrency.py --levels 1,10,100 --latency 1 --calls 20   # quick

Each optimization is a RunConfig (task sst2, optimizer none, num_threads 1: its calls go one after another) run
through plan -> execute by optimize_many(backend="ray"); each has its own model name, so no run is served from
another's cache. Writes benchmarks/results/concurrency.json (rows: concurrency, efficiency, ...) and an altair chart.
"""
import argparse, json, os, sys, tempfile, threading, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, Timer, write_result

BACKEND = "ray"

def worker_rss() -> tuple[float, int]:
    "MiB resident in the processes running the optimizations (Ray's RunWorker actors, or this one), and how many."
    import psutil
    if BACKEND == "local": return psutil.Process().memory_info().rss / 2**20, 1
    tot, n = 0, 0
    for p in psutil.process_iter(["cmdline", "memory_info"]):
        try:
            if any("RunWorker" in c for c in (p.info["cmdline"] or [])): tot += p.info["memory_info"].rss; n += 1
        except Exception: pass
    return tot / 2**20, n

def cpu_seconds(pids) -> float:
    import psutil
    s = 0.0
    for pid in pids:
        try: t = psutil.Process(pid).cpu_times(); s += t.user + t.system
        except Exception: pass
    return s

def worker_pids():
    import psutil
    if BACKEND == "local": return [os.getpid()]
    return [p.pid for p in psutil.process_iter(["cmdline"]) if any("RunWorker" in c for c in (p.info["cmdline"] or []))]

def level(n, srv, latency, calls, tag):
    "Run n optimizations at once; sample the server's counters, the workers' memory and CPU."
    from dspyopt_nb.scale.many import optimize_many
    n_val = max(1, calls // 2); n_test = max(1, calls - n_val)  # baseline on val + baseline on test (the optimized program's test calls are cache hits)
    cfgs = [dict(task="sst2", optimizer="none", n_train=2, n_val=n_val, n_test=n_test, num_threads=1, tracking=False, seed=i % 50,
                 lm=f"http:{tag}-{n}-{i}@{srv.url}", lm_timeout_s=600) for i in range(n)]
    samples, mem, stop, cpu = [], [], threading.Event(), {}
    def sample():
        while not stop.is_set():
            st = srv.stats(); samples.append((time.monotonic(), st["answered"], st["active"]))
            if st["active"] >= 0.9 * n and len(mem) < 5:
                mem.append(worker_rss())
                if "t0" not in cpu: pids = worker_pids(); cpu.update(t0=time.monotonic(), c0=cpu_seconds(pids), a0=st["answered"], pids=pids)
            stop.wait(1.0)
    th = threading.Thread(target=sample, daemon=True); th.start()
    a0 = srv.stats()["answered"]
    t0 = time.monotonic()
    out = optimize_many(cfgs, backend=BACKEND, progress=True, every_s=15, keep_workers=True,  # the same actors at every level
                        max_concurrent=n)
    wall = time.monotonic() - t0
    if "pids" in cpu: cpu.update(t1=time.monotonic(), c1=cpu_seconds(cpu["pids"]), a1=srv.stats()["answered"])
    stop.set(); th.join()
    answered = srv.stats()["answered"] - a0
    ideal = n / latency
    # the steady state: while at least 90 % of the optimizations have a call in flight; runs started together answer in
    # bursts, one per latency, so the rate is taken between samples at least 10 latencies apart (bias under 10 %)
    steady = [s for s in samples if s[2] >= 0.9 * n]
    if len(steady) >= 2 and steady[-1][0] - steady[0][0] >= 10 * latency:
        (t1, a1, _), (t2, a2, _) = steady[0], steady[-1]; how = "steady"
    else:  # too short (or never that busy): from the first answered call to the last
        moving = [s for s in samples if s[1] > a0]
        (t1, a1, _), (t2, a2, _) = (moving[0], moving[-1]) if len(moving) >= 2 else (samples[0], samples[-1]); how = "whole run"
    best = (a2 - a1) / max(1e-9, t2 - t1)
    first_call = next((t for t, a, _ in samples if a > a0), None)
    per_run_calls = answered / n
    row = dict(concurrency=n, latency_s=latency, lm_calls=answered, calls_per_run=round(per_run_calls, 1),
               ideal_calls_per_s=round(ideal, 1), calls_per_s=round(best, 1), efficiency=round(best / ideal, 3),
               wall_s=round(wall, 1), ideal_wall_s=round(per_run_calls * latency, 1),
               end_to_end_efficiency=round(per_run_calls * latency / wall, 3),
               time_to_first_call_s=None if first_call is None else round(first_call - t0, 1),
               finished=sum(r["status"] == "finished" for r in out.rows), failed=len(out.failed()), workers=out.workers,
               max_in_flight=max((a for _, _, a in samples), default=0), rate_window=how, rate_window_s=round(t2 - t1, 1),
               samples=[(round(t - t0, 2), a - a0, act) for t, a, act in samples])
    if mem:
        rss, k = max(mem)
        row.update(worker_rss_mib=round(rss, 1), worker_processes=k, mib_per_optimization=round(rss / n, 2))
    if "c1" in cpu and cpu["a1"] > cpu["a0"]:
        row["worker_cpu_ms_per_call"] = round(1000 * (cpu["c1"] - cpu["c0"]) / (cpu["a1"] - cpu["a0"]), 2)
    row["scheduler_overhead_s"] = round(max(0.0, wall - row["ideal_wall_s"]), 1)
    print(json.dumps(row), flush=True)
    return row

def client_cost(n=600):
    "Client CPU per DSPy call at zero latency: the lean HTTP engine against litellm, same program, same server (its own process)."
    import dspy
    from concurrent.futures import ThreadPoolExecutor
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.fake_server import serve_process
    from dspyopt_nb.engines.http import http_lm
    from dspyopt_nb.engines.lm import lm
    prog, out = load_task("sst2").program(), {}
    with serve_process(latency_s=0.0) as srv:
        for name, L in (("http", http_lm("m", srv.url, cache=False)), ("litellm", lm("openai/m", api_base=srv.url, api_key="x", cache=False))):
            def one(i):
                with dspy.context(lm=L): return prog(review=f"film {i} was fine").sentiment
            with ThreadPoolExecutor(32) as ex: list(ex.map(one, range(50)))
            c0, t0 = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(32) as ex: list(ex.map(one, range(n)))
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            out[name] = dict(client_cpu_ms_per_call=round(1000 * cpu / n, 2), calls_per_s_one_process=round(n / wall, 1))
    out["litellm_over_http"] = round(out["litellm"]["client_cpu_ms_per_call"] / out["http"]["client_cpu_ms_per_call"], 2)
    return out

def chart(rows, path):
    import altair as alt, pandas as pd
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(x=alt.X("concurrency:Q", scale=alt.Scale(type="log"), title="concurrent optimizations"))
    eff = base.mark_line(point=True).encode(y=alt.Y("efficiency:Q", title="LM calls/s ÷ ideal", scale=alt.Scale(domain=[0, 1.1])))
    goal = alt.Chart(pd.DataFrame({"y": [0.8]})).mark_rule(strokeDash=[4, 4], color="red").encode(y="y:Q")
    (eff + goal).properties(title="throughput against concurrency ÷ latency", width=420, height=260).save(str(path))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,10,100,1000,2000"); ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument("--calls", type=int, default=40, help="LM calls per optimization (one after another)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2); ap.add_argument("--out", default=None)
    ap.add_argument("--skip-ceiling", action="store_true")
    ap.add_argument("--backend", default="ray", choices=["ray", "local"], help="local: the runs as threads of this one process")
    ap.add_argument("--note", default=None, help="a remark stored with the result (e.g. why a backend was chosen)")
    a = ap.parse_args()
    global BACKEND; BACKEND = a.backend
    tmp = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    os.environ.update(DSPYOPT_RUNS=str(tmp / "runs"), DSPY_CACHEDIR=str(tmp / "dspy_cache"), DSPYOPT_NO_PROGRESS="1",
                      RAY_USAGE_STATS_ENABLED="0")
    import ray
    from dspyopt_nb.engines.fake_server import serve_process
    from dspyopt_nb.scale.many import ray_init
    ray_error = None
    with Timer() as t_ray:
        if a.backend == "ray":
            try: ray_init(num_cpus=a.cpus)
            except Exception as e:  # Ray's node start-up gives up on a heavily loaded machine: measure in one process instead
                ray_error = f"{type(e).__name__}: {str(e)[:300]}"; print(f"Ray did not start ({ray_error}); using the local backend")
                a.backend = BACKEND = "local"; globals()["BACKEND"] = "local"
    rows, load0 = [], os.getloadavg()[0]
    with serve_process(latency_s=a.latency) as srv:
        for n in [int(x) for x in a.levels.split(",")]:
            rows.append(level(n, srv, a.latency, a.calls, "lat"))
    ceiling = None
    if not a.skip_ceiling:
        with serve_process(latency_s=0.0) as srv:
            r = level(64, srv, 1e-9, a.calls, "zero")
            rows_zero = r
            ceiling = dict(concurrency=64, calls_per_s=r["calls_per_s"], worker_cpu_ms_per_call=r.get("worker_cpu_ms_per_call"),
                           calls_per_s_per_core=round(1000 / r["worker_cpu_ms_per_call"], 1) if r.get("worker_cpu_ms_per_call") else None)
        ceiling["client"] = client_cost()
    if a.backend == "ray": ray.shutdown()
    at = {r["concurrency"]: r for r in rows}
    if 1 in at and at[1].get("worker_rss_mib"):  # memory an extra optimization adds, over the same (warm) worker processes
        for r in rows:
            if r["concurrency"] > 1 and r.get("worker_rss_mib"):
                r["marginal_mib_per_optimization"] = round((r["worker_rss_mib"] - at[1]["worker_rss_mib"]) / (r["concurrency"] - 1), 3)
    goal = dict(goal="efficiency >= 0.8 at 1000 concurrent optimizations", met=(at.get(1000) or {}).get("efficiency", 0) >= 0.8)
    path = write_result("concurrency", dict(backend=a.backend, ray_error=ray_error, note=a.note, latency_s=a.latency, calls_per_optimization=a.calls, ray_init_s=round(t_ray.s, 1),
                                            load_avg_before=round(load0, 2), rows=rows, cpu_ceiling=ceiling, **goal), a.out)
    try: chart(rows, Path(path).with_suffix(".html")); chart(rows, Path(path).with_suffix(".png"))
    except Exception as e: print(f"chart not written: {e}")
    print(f"{'concurrency':>11} {'calls/s':>8} {'ideal':>7} {'eff':>5} {'wall s':>7} {'MiB/opt':>8} {'failed':>6}")
    for r in rows: print(f"{r['concurrency']:>11} {r['calls_per_s']:>8} {r['ideal_calls_per_s']:>7} {r['efficiency']:>5} {r['wall_s']:>7} {r.get('mib_per_optimization', '–'):>8} {r['failed']:>6}")
    print(f"goal met: {goal['met']}; ceiling: {json.dumps(ceiling)}; wrote {path}")

if __name__ == "__main__": main()
