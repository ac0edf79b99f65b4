"""ga, mipro, gepa and bootstrap at an equal metric-call budget on the bundled tasks, scored on held-out rows.

    .venv/bin/python benchmarks/compare_optimizers.py [--tasks sst2,agnews] [--optimizers ga,mipro,gepa,bootstrap]
        [--n-train 40] [--n-val 30] [--n-test 200] [--budget 400] [--preset light] [--lm local] [--seed 0]
        [--knobs '{"ga": {"population_size": 6}}'] [--out benchmarks/results/compare_optimizers.json]

Every optimizer gets the same splits, the same model and the same hard cap on metric calls (`max_metric_calls`,
which counts the baseline's validation pass too); a run that reaches the cap stops with its best program so far
(status "stopped"). Per task it reports each optimizer's held-out accuracy with a 95% Wilson interval, its
difference from the unoptimized program, Holm-corrected p-values (against the baseline, and for every pair of
optimizers: paired tests on the same held-out rows), metric calls, LM tokens and wall time.

A benchmark that is stopped part-way can be started again with the same arguments: runs with a result in --runs-dir
are reported as they were measured, and a run that was killed resumes (the GA from its checkpoint, the others from
DSPy's cache); its wall time then covers the resumed part only.

Fairness of wall time: the unoptimized program is scored first on validation and test (the "none" row), which warms
DSPy's cache for exactly those calls, so no optimizer is charged for or spared the shared baseline work. Each run has
its own run directory; a rerun with the same arguments returns finished runs from there (delete --runs-dir to
measure again). Tokens are the LM tokens of uncached calls the run made.
"""
import argparse, itertools, json, math, os, sys, time
from pathlib import Path

os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import warnings
import dspyopt_nb.ga  # noqa: F401  registers optimizer "ga"
from dspyopt_nb.data import load_task
from dspyopt_nb.lm import lm as make_lm
from dspyopt_nb.optimize import optimize
from dspyopt_nb.result import OptimizationResult
from dspyopt_nb.stats import UnderpoweredWarning, adjust_pvalues, compare_paired


def wilson(k: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    "95% Wilson score interval of a proportion k/n (0/1 scores); for other scores, the mean's normal interval."
    if n == 0: return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def run_one(task, sp, optimizer, a, lm, knobs):
    t = time.time()
    done = Path(a.runs_dir) / task.name / optimizer / "result.json"
    if done.exists() and not a.fresh:
        # a run measured before (finished, or stopped at the cap) is reported as measured; optimize() would run a
        # stopped one again, from its cache, and report the rerun's wall time and tokens instead
        res = OptimizationResult.load(done)
    else: res = optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=optimizer,
                   budget=a.preset, lm=lm, seed=a.seed, max_metric_calls=None if optimizer == "none" else a.budget,
                   tracking=False, progress=False, run_dir=Path(a.runs_dir) / task.name / optimizer, **knobs)
    u = res.usage
    return dict(optimizer=optimizer, status=res.status, message=res.message, held_out=res.optimized,
                baseline=res.baseline, scores=res.optimized_scores, baseline_scores=res.baseline_scores,
                # the cap covers the optimization (baseline validation pass included), not the 2 x n_test held-out scoring
                metric_calls=u.get("metric_calls") - 2 * len(sp.test), lm_calls=u.get("lm_calls"),
                tokens=u.get("input_tokens", 0) + u.get("output_tokens", 0), wall_s=u.get("wall_s"),
                measured_s=round(time.time() - t, 1), n_candidates=len(res.candidates))


def analyse(rows: list, task_name: str) -> dict:
    "CIs, differences from the baseline and pairwise comparisons, Holm-corrected within the task."
    base = next(r for r in rows if r["optimizer"] == "none")
    opts = [r for r in rows if r["optimizer"] != "none"]
    n = len(base["scores"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnderpoweredWarning)
        vs_base = [compare_paired(base["scores"], r["scores"], seed=0) for r in opts]
        pairs = list(itertools.combinations(opts, 2))
        pair_cmp = [compare_paired(x["scores"], y["scores"], seed=0) for x, y in pairs]
    adj_base = adjust_pvalues([c.p_value for c in vs_base], "holm").p_adjusted if opts else []
    adj_pair = adjust_pvalues([c.p_value for c in pair_cmp], "holm").p_adjusted if pairs else []
    for r in rows: r["ci"] = wilson(sum(r["scores"]), n)

    for r, c, p in zip(opts, vs_base, adj_base):
        r.update(diff=c.diff, diff_ci=list(c.ci), p_vs_baseline=c.p_value, p_vs_baseline_holm=float(p), test=c.test)
    # per-example scores stay out of the committed JSON (the run directories hold them); counts suffice for the CIs
    return dict(task=task_name, n_test=n, rows=[{k: v for k, v in r.items() if k not in ("scores", "baseline_scores")} for r in rows],
                pairs=[dict(a=x["optimizer"], b=y["optimizer"], diff=c.diff, ci=list(c.ci), p=c.p_value, p_holm=float(p), test=c.test)
                       for (x, y), c, p in zip(pairs, pair_cmp, adj_pair)])


def fmt_p(p): return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else ("<0.001" if p < 1e-3 else f"{p:.3f}")


def table(report: dict) -> str:
    out = []
    for t in report["tasks"]:
        out.append(f"\n{t['task']}: {t['n_test']} held-out rows, budget {report['args']['budget']} metric calls per optimizer")
        out.append(f"{'optimizer':10s} {'held-out':>8s} {'95% CI':>15s} {'diff vs base':>13s} {'p (Holm)':>9s} "
                   f"{'metric calls':>12s} {'tokens':>9s} {'wall s':>7s}  status")
        for r in t["rows"]:
            name = "baseline" if r["optimizer"] == "none" else r["optimizer"]
            diff = "" if r["optimizer"] == "none" else f"{r['diff']:+.3f}"
            p = "" if r["optimizer"] == "none" else fmt_p(r["p_vs_baseline_holm"])
            out.append(f"{name:10s} {r['held_out']:8.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] {diff:>13s} {p:>9s} "
                       f"{r['metric_calls']:12d} {r['tokens']:9d} {r['wall_s']:7.0f}  {r['status']}")
        out.append("pairwise (b - a, paired on the same rows; Holm across the pairs of this task):")
        for pr in t["pairs"]:
            out.append(f"  {pr['b']:>9s} - {pr['a']:<9s} {pr['diff']:+.3f} [{pr['ci'][0]:+.3f}, {pr['ci'][1]:+.3f}]  "
                       f"p {fmt_p(pr['p'])}, Holm {fmt_p(pr['p_holm'])}  ({pr['test']})")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="sst2,agnews")
    ap.add_argument("--optimizers", default="ga,mipro,gepa,bootstrap")
    ap.add_argument("--n-train", type=int, default=40); ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--budget", type=int, default=400, help="max metric calls per optimizer (the baseline's validation pass included)")
    ap.add_argument("--preset", default="light", help="budget preset of every optimizer; the metric-call cap binds first when smaller")
    ap.add_argument("--knobs", default="{}", help='JSON: per-optimizer knob overrides, e.g. {"ga": {"population_size": 6}}')
    ap.add_argument("--lm", default="local"); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default=str(Path.home() / ".cache" / "dspyopt" / "compare_optimizers"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "compare_optimizers.json"))
    ap.add_argument("--fresh", action="store_true", help="run again even where --runs-dir holds a result (it resumes from the cache)")
    a = ap.parse_args()
    knobs = json.loads(a.knobs)
    lm = make_lm(a.lm) if a.lm else None
    report = dict(args=vars(a), lm=a.lm, cpu_count=os.cpu_count(), tasks=[])
    for name in a.tasks.split(","):
        task = load_task(name)
        sp = task.splits(n_train=a.n_train, n_val=a.n_val, n_test=a.n_test, seed=a.seed)
        rows = []
        for opt in ["none"] + a.optimizers.split(","):  # "none" first: the shared baseline work, cached for all
            print(f"[{name}] {opt} ...", flush=True)
            rows.append(run_one(task, sp, opt, a, lm, knobs.get(opt, {})))
            r = rows[-1]
            print(f"[{name}] {opt}: held-out {r['held_out']:.3f}, {r['metric_calls']} metric calls, {r['tokens']} tokens, "
                  f"{r['wall_s']:.0f} s, {r['status']}", flush=True)
            # after each run: a long benchmark that is stopped keeps what it measured
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({**report, "tasks": report["tasks"] + [analyse(rows, name)]}, indent=1))
        report["tasks"].append(analyse(rows, name))
    print(table(report))
    print(f"\nwritten to {a.out}")


if __name__ == "__main__":
    main()
