"""Optimizers side by side at an equal metric-call budget on the bundled tasks, with the embedded model, scored on
held-out rows none of them saw: a thin caller of `dspyopt_nb.optimizers.compare.compare_optimizers`.

    .venv/bin/python benchmarks/compare_optimizers.py [--tasks sst2,agnews] [--optimizers ga,mipro,gepa,bootstrap]
        [--n-train 60] [--n-val 40] [--n-test 300] [--budget 400] [--preset light] [--lm local] [--seed 0]

Every optimizer gets the same splits, the same model and the same hard cap on metric calls (the baseline's validation
pass included); GEPA spends the same budget as the others (its re-scoring of a rollout is not counted twice). Each
run is an ordinary run in the run catalogue: a benchmark stopped part-way resumes where it was when started again.
Writes benchmarks/results/compare_optimizers.json with the command, commit, versions and machine.

The tasks are independent: on a machine with spare cores, run each in a process of its own (`--tasks sst2 --out A.json`,
`--tasks agnews --out B.json`, with DSPYOPT_LLAMA_THREADS=1 each) and combine their files with `--merge A.json B.json`;
the combined file keeps each part's command, commit, machine and wall time.
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
ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine files this script wrote for different --tasks (same settings otherwise) into one")
a = ap.parse_args()


def merge(paths: list[str]) -> dict:
    "One comparison from parts run separately: their settings must agree except for the tasks, and no task may repeat."
    parts = [json.loads(open(p).read()) for p in paths]
    same = lambda d: {k: v for k, v in d["settings"].items() if k != "tasks"}
    for p, d in zip(paths, parts):
        if same(d) != same(parts[0]):
            sys.exit(f"{p} was run with other settings than {paths[0]} ({same(d)} vs {same(parts[0])}). Fix: merge parts run with the same settings.")
    tasks = [t for d in parts for t in d["tasks"]]
    if len({t["task"] for t in tasks}) < len(tasks): sys.exit("a task appears in more than one part. Fix: merge parts with different --tasks.")
    return dict(settings={**same(parts[0]), "tasks": [t["task"] for t in tasks]}, tasks=tasks, wall_s=max(d["wall_s"] for d in parts),
                parts=[{k: d.get(k) for k in ("command", "commit", "dirty", "machine", "written", "wall_s")} for d in parts])


if a.merge:
    print(f"written to {write_result('compare_optimizers', merge(a.merge), a.out)}")
    sys.exit()
t0 = time.time()
res = compare_optimizers(a.tasks.split(","), a.optimizers, max_metric_calls=a.budget, preset=a.preset, n_train=a.n_train,
                         n_val=a.n_val, n_test=a.n_test, seed=a.seed, lm=a.lm, knobs=json.loads(a.knobs), tracking=False,
                         log=lambda m: print(m, flush=True))
print(repr(res)); print(); print(res.verdict())
path = write_result("compare_optimizers", dict(**res.to_dict(), wall_s=round(time.time() - t0)), a.out)
print(f"\nwritten to {path}")
