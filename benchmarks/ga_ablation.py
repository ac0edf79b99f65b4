"""Does evolution earn its name? The GA against its own generation 0 (random search over the same space), at an equal
metric-call budget, on held-out rows, with the embedded model, side by side in one run.

`evolve=False` keeps the GA's proposals, demo pools, elites and budget, and replaces selection, crossover and mutation
by fresh random genomes each generation. Per task and seed: held-out accuracy of both, the paired difference
(evolution - random) with its CI and McNemar p-value; then pooled over tasks and seeds.

    .venv/bin/python benchmarks/ga_ablation.py [--tasks sst2,agnews] [--seeds 0] [--budget 300] [--n-test 300] [--knobs JSON]
"""
import argparse, json, os, time
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
from _common import write_result
import warnings
from dspyopt_nb.optimize import optimize
from dspyopt_nb.stats import compare_paired

ap = argparse.ArgumentParser(); ap.add_argument("--tasks", default="sst2,agnews"); ap.add_argument("--seeds", default="0")
ap.add_argument("--budget", type=int, default=300); ap.add_argument("--n-train", type=int, default=60)
ap.add_argument("--n-val", type=int, default=40); ap.add_argument("--n-test", type=int, default=300)
ap.add_argument("--lm", default="local"); ap.add_argument("--out", default=None)
ap.add_argument("--knobs", default="{}", help='GA knobs as JSON for both arms, e.g. \'{"population_size": 6, "minibatch_size": 6}\' '
                "(the defaults spend a small budget on generation 0 alone, and then there is nothing to compare)")
a = ap.parse_args()
rows, evo_all, rnd_all, t0 = [], [], [], time.time()
for task in a.tasks.split(","):
    for seed in map(int, a.seeds.split(",")):
        cfg = dict(task=task, optimizer="ga", n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, seed=seed, lm=a.lm,
                   max_metric_calls=a.budget, tracking=False)
        knobs = dict(patience=10, generations=20, **json.loads(a.knobs))
        evo = optimize(config=cfg, knobs=knobs)
        rnd = optimize(config=cfg, knobs=dict(knobs, evolve=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = compare_paired(rnd.optimized_scores, evo.optimized_scores, seed=0)
        rows.append(dict(task=task, seed=seed, baseline=evo.baseline, evolution=evo.optimized, random=rnd.optimized, diff=c.diff,
                         ci=list(c.ci), p_value=c.p_value, evo_calls=evo.usage["metric_calls"] - 2 * a.n_test,
                         random_calls=rnd.usage["metric_calls"] - 2 * a.n_test, evo_run=evo.run_id, random_run=rnd.run_id,
                         evo_best_val=evo.best_candidate.score, random_best_val=rnd.best_candidate.score))
        evo_all += evo.optimized_scores; rnd_all += rnd.optimized_scores
        r = rows[-1]
        print(f"{task} seed {seed}: baseline {r['baseline']:.3f}, evolution {r['evolution']:.3f}, random {r['random']:.3f}, "
              f"diff {r['diff']:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}] p = {c.p_value:.3g}; calls {r['evo_calls']} vs {r['random_calls']}", flush=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pooled = compare_paired(rnd_all, evo_all, seed=0)
print(f"pooled over {len(rows)} task x seed: evolution {sum(evo_all) / len(evo_all):.3f} vs random {sum(rnd_all) / len(rnd_all):.3f}, "
      f"diff {pooled.diff:+.3f} [{pooled.ci[0]:+.3f}, {pooled.ci[1]:+.3f}], p = {pooled.p_value:.3g} ({pooled.test})")
verdict = ("evolution beats random search" if pooled.diff > 0 and pooled.p_value < 0.05 else
           "random search beats evolution" if pooled.diff < 0 and pooled.p_value < 0.05 else
           "no significant difference between evolution and random search at this budget")
print(verdict)
path = write_result("ga_ablation", dict(args=vars(a), rows=rows, pooled=pooled.to_dict(), verdict=verdict, wall_s=round(time.time() - t0)), a.out)
print(f"written to {path}")
