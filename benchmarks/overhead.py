"""Per-LM-call cost of a run's evaluation path against raw dspy.Evaluate, side by side in one run, on a zero-latency engine.

Three paths score the same SST-2 rows with the same program and a scripted engine that answers instantly (so only the
machinery is timed):

- raw      : dspy.Evaluate with CompletionAdapter, nothing else;
- default  : what optimize() runs by default: the run's metric wrapper, usage meter, caps and stop checks, log capture,
             the events file, the console progress bar, and MLflow tracking to a SQLite store (its background writer
             taking every event);
- stripped : the same with tracking, the events file and the progress bar off.

Each timed round starts from the same state (histories cleared, garbage collected), and the order alternates.
Goals (issue 10): default <= 1.10x raw, stripped <= 1.05x raw.

    .venv/bin/python benchmarks/overhead.py [--n 400] [--rounds 7]
"""
import argparse, contextlib, gc, io, os, statistics, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="dspyopt-overhead-cache-"))
from _common import write_result

import dspy
from dspyopt_nb.data import load_task
from dspyopt_nb.engines.adapter import AutoAdapter, CompletionAdapter
from dspyopt_nb.engines.scripted import scripted_lm
from dspyopt_nb.run.events import EventStream, RunStarted
from dspyopt_nb.run.execute import _subscribers
from dspyopt_nb.run.plan import plan
from dspyopt_nb.run.recorder import MetricWrapper, RunState, evaluate_scores, make_meter, quiet_dspy, record_evaluations

ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=400); ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--out", default=None)
a = ap.parse_args()
task = load_task("sst2")
devset = task.examples()[: a.n]
prog = task.program()
L = scripted_lm(lambda p: " positive", "zero", cache=False)
tmp = Path(tempfile.mkdtemp(prefix="dspyopt-overhead-"))
record_evaluations()

def raw():
    with dspy.context(lm=L, adapter=CompletionAdapter()):
        dspy.Evaluate(devset=devset, metric=task.metric, num_threads=1, display_progress=False)(prog)

def make_run(default: bool):
    "The run's state and subscribers exactly as execute() sets them up (default settings, or everything optional off)."
    p = plan(dict(optimizer="none", tracking=f"sqlite:///{tmp}/mlflow.db" if default else False, run_dir=str(tmp / ("d" if default else "s"))),
             prog, (devset[:8], devset[8:16], devset[16:24]), metric=task.metric, lm=L, root=tmp)
    stream = EventStream(p.run_id, p.run_dir / "events.jsonl" if default else None)
    state = RunState(p.run_id, stream, n_val=len(devset))
    subs, tracker = _subscribers(p, stream, (), default)
    stream.emit(RunStarted(optimizer="none", n_test=0, estimate=p.estimate.to_dict()))
    return state, stream, tracker

def ours(state):
    state.phase = "optimize"
    with quiet_dspy(), dspy.context(lm=L, adapter=AutoAdapter(), usage_tracker=make_meter(state), dspyopt_run=state):
        evaluate_scores(prog, devset, MetricWrapper(task.metric, state), num_threads=1)

def fresh():
    "The same state for each timed round: DSPy's call histories grow with every call, and with them the GC's work."
    from dspy.clients.base_lm import GLOBAL_HISTORY
    L.history.clear(); prog.history.clear(); GLOBAL_HISTORY.clear(); gc.collect()

with contextlib.redirect_stderr(io.StringIO()):  # the default path's progress bar draws, into nothing
    runs = {"default": make_run(True), "stripped": make_run(False)}
    paths = {"raw": raw, "default": lambda: ours(runs["default"][0]), "stripped": lambda: ours(runs["stripped"][0])}
    for f in paths.values(): f()  # warm up
    times = {k: [] for k in paths}
    order = list(paths)
    for i in range(a.rounds):
        for name in (order if i % 2 == 0 else order[::-1]):  # alternate the order too
            fresh(); t = time.perf_counter(); paths[name]()
            times[name].append((time.perf_counter() - t) / len(devset))
    tracker = runs["default"][2]
    flushed = tracker.flush(60); tracker.close()

med = {k: statistics.median(v) for k, v in times.items()}
best = {k: min(v) for k, v in times.items()}
rows = {k: dict(ms_per_call_median=round(med[k] * 1e3, 4), ms_per_call_fastest=round(best[k] * 1e3, 4),
                ratio_median=round(med[k] / med["raw"], 3), ratio_fastest=round(best[k] / best["raw"], 3)) for k in paths}
print(f"{len(devset)} examples x {a.rounds} rounds, zero-latency engine, no LM cache, {os.cpu_count()} cores")
for k, r in rows.items():
    goal = {"default": " (goal <= 1.10)", "stripped": " (goal <= 1.05)"}.get(k, "")
    print(f"  {k:9s}: {r['ms_per_call_median']:.3f} ms per call (median), ratio to raw {r['ratio_median']:.3f} median, "
          f"{r['ratio_fastest']:.3f} fastest{goal}")
print(f"  MLflow writer flushed every event: {flushed}")
path = write_result("overhead", dict(n=len(devset), rounds=a.rounds, rows=rows, goals=dict(default=1.10, stripped=1.05),
                                     mlflow_flushed=flushed, times_ms={k: [round(x * 1e3, 4) for x in v] for k, v in times.items()}), a.out)
print(f"written to {path}")
