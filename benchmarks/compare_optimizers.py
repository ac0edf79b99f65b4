"""Optimizers side by side at an equal metric-call budget on the bundled tasks, with the embedded model, scored on
held-out rows none of them saw: a thin caller of `dspyopt_nb.optimizers.compare.compare_optimizers`.

    .venv/bin/python benchmarks/compare_optimizers.py [--tasks sst2,agnews] [--optimizers ga,mipro,gepa,bootstrap]
        [--n-train 60] [--n-val 40] [--n-test 300] [--budget 400] [--preset light] [--lm local] [--seed 0]

Every optimizer gets the same splits, the same model and the same hard cap on metric calls (the baseline's validation
pass included); GEPA spends the same budget as the others (its re-scoring of a rollout is not counted twice). Each
run is an ordinary run in the run catalogue: a benchmark stopped part-way resumes where it was when started again.
Writes benchmarks/results/compare_optimizers.json with the command, commit, versions and machine.
"""
import argparse, json, os, sys, time
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
from _common import write_result
from dspyopt_nb.optimizers.compare import compare_optimizers

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--tasks", default="sst2,agnews"); ap.add_argument("--optimizers", default="ga,mipro,gepa,bootstrap")
ap.add_argument("--n-train", type=int, default=60); ap.add_argument("--n-val", type=int, default=40)
ap.add_argument("--n-test", type=int, default=300)
ap.add_argument("--budget", type=int, default=400, help="max metric calls per optimizer (the baseline's validation pass included)")
ap.add_argument("--preset", default="light"); ap.add_argument("--lm", default="local"); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--knobs", default="{}", help='JSON: per-optimizer knob overrides, e.g. {"ga": {"population_size": 6}}')
ap.add_argument("--out", default=None)
a = ap.parse_args()
t0 = time.time()
res = compare_optimizers(a.tasks.split(","), a.optimizers, max_metric_calls=a.budget, preset=a.preset, n_train=a.n_train,
                         n_val=a.n_val, n_test=a.n_test, seed=a.seed, lm=a.lm, knobs=json.loads(a.knobs), tracking=False,
                         log=lambda m: print(m, flush=True))
print(repr(res)); print(); print(res.verdict())
path = write_result("compare_optimizers", dict(**res.to_dict(), wall_s=round(time.time() - t0)), a.out)
print(f"\nwritten to {path}")
