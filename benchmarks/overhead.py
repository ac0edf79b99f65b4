"""Per-LM-call overhead of optimize()'s evaluation path (metric wrapper, usage meter, run callbacks, AutoAdapter)
against raw dspy.Evaluate with CompletionAdapter, both on a zero-latency engine, side by side in one run.

    .venv/bin/python benchmarks/overhead.py [--n 400] [--rounds 5]
"""
import argparse, gc, os, statistics, time
os.environ.setdefault("DSPY_CACHEDIR", "/tmp/dspyopt-bench-cache")
import dspy
from dspyopt_nb.adapter import AutoAdapter, CompletionAdapter
from dspyopt_nb.data import load_task
from dspyopt_nb.events import EventStream
from dspyopt_nb.lm import ScriptedEngine
from dspyopt_nb.optimize import MetricWrapper, Run, _Meter, _record_evaluations, evaluate_scores

ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=400); ap.add_argument("--rounds", type=int, default=5)
a = ap.parse_args()
task = load_task("sst2")
devset = task.examples()[: a.n]
prog = task.program()
L = dspy.LM("scripted/zero", engine=ScriptedEngine(lambda p: " positive"), cache=False)

def raw():
    with dspy.context(lm=L, adapter=CompletionAdapter()):
        dspy.Evaluate(devset=devset, metric=task.metric, num_threads=1, display_progress=False)(prog)

_record_evaluations()

def ours():
    run = Run("bench", EventStream("bench"), n_val=len(devset))
    run.phase = "optimize"
    with dspy.context(lm=L, adapter=AutoAdapter(), usage_tracker=_Meter(run), dspyopt_run=run):
        evaluate_scores(prog, devset, MetricWrapper(task.metric, run), num_threads=1)

def fresh():
    """The same starting state for each timed run: DSPy's call histories grow with every call (and with them the work
    of the garbage collector), so without this whichever path runs second is measured with more live objects."""
    from dspy.clients.base_lm import GLOBAL_HISTORY
    L.history.clear(); prog.history.clear(); GLOBAL_HISTORY.clear(); gc.collect()

raw(); ours()  # warm up
tr, to = [], []
for i in range(a.rounds):
    for name in (("raw", "ours") if i % 2 == 0 else ("ours", "raw")):  # alternate the order too
        fresh(); t = time.perf_counter(); (raw if name == "raw" else ours)()
        (tr if name == "raw" else to).append((time.perf_counter() - t) / len(devset))
r, o = statistics.median(tr), statistics.median(to)
print(f"{len(devset)} examples x {a.rounds} rounds, zero-latency engine, no cache")
print(f"raw dspy.Evaluate            : {r * 1e3:.3f} ms per LM call")
print(f"optimize() evaluation path   : {o * 1e3:.3f} ms per LM call")
print(f"ratio optimize()/raw Evaluate: {o / r:.3f}   (goal <= 1.05)")
print(f"ratio of the fastest rounds : {min(to) / min(tr):.3f}   (the steadier figure on a shared machine: noise only adds time)")
