"""The gated search against the ordinary one, at equal budget: the same candidates (random labeled demo sets) scored on
the same validation examples, selected either by the best validation mean (gate=False) or by a paired one-sided test
under O'Brien-Fleming alpha spending (gate=True). Held-out gain, its spread over seeds, and shrinkage, per task.

    .venv/bin/python benchmarks/gated_search.py [--tasks sst2,agnews,banking77,gsm8k] [--runs-dir DIR]

The runs are the knowledge-base seed's gated pairs (benchmarks/seed_kb.py plans them with the same settings): with the
seed's runs directory they load from disk in seconds; elsewhere they run (with the embedded model, for a while).
Writes benchmarks/results/gated_search.json with the command, commit, versions and machine.
"""
import argparse, json, math, os, time, warnings
from pathlib import Path
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
from _common import write_result
from seed_kb import CELLS, settings

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(CELLS))
    ap.add_argument("--runs-dir", default=os.environ.get("DSPYOPT_SEED_RUNS", str(Path.home() / ".cache" / "dspyopt" / "seed_runs")))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--missing", choices=["run", "skip"], default="run", help="a pair not finished in the runs directory: run it, or leave it out")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    os.environ["DSPYOPT_RUNS"] = str(Path(a.runs_dir).resolve())
    import numpy as np
    from dspyopt_nb.engines.lm import lm
    from dspyopt_nb.optimize import optimize
    from dspyopt_nb.stats import compare_paired
    model, t0, rows = lm("local", n_threads=a.threads), time.time(), []
    for task in a.tasks.split(","):
        for seed, n_val in CELLS[task]:
            res = {}
            for gate in (True, False):
                r = dict(task=task, seed=seed, n_val=n_val, optimizer="gated", preset="light", knobs={"gate": gate})
                if a.missing == "skip":
                    p = optimize(config=settings(r), lm=model, dry_run=True)
                    done = p.run_dir / "result.json"
                    if not done.exists() or json.loads(done.read_text()).get("status") != "finished": break
                res[gate] = optimize(config=settings(r), lm=model, progress=False)
            if len(res) < 2: print(f"{task} seed {seed} n_val {n_val}: not in the runs directory, left out (--missing skip)", flush=True); continue
            g, u = res[True], res[False]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = compare_paired(u.optimized_scores, g.optimized_scores)
            rows.append(dict(task=task, seed=seed, n_val=n_val, metric_calls_gated=g.usage["metric_calls"], metric_calls_ungated=u.usage["metric_calls"],
                             baseline=g.baseline, gain_gated=g.held_out_gain, gain_ungated=u.held_out_gain,
                             val_gain_gated=g.validation_gain, val_gain_ungated=u.validation_gain,
                             shrinkage_gated=g.shrinkage, shrinkage_ungated=u.shrinkage, gated_kept_baseline=g.selected == 0,
                             gated_minus_ungated=c.diff, ci=list(c.ci), p_value=c.p_value, runs=[g.run_id, u.run_id]))
            print(f"{task} seed {seed} n_val {n_val}: held-out gain gated {g.held_out_gain:+.3f} vs ungated {u.held_out_gain:+.3f} "
                  f"(shrinkage {g.shrinkage:+.3f} vs {u.shrinkage:+.3f}; {g.usage['metric_calls']} vs {u.usage['metric_calls']} metric calls)", flush=True)
    def summary(rs):
        gg, gu = np.array([r["gain_gated"] for r in rs]), np.array([r["gain_ungated"] for r in rs])
        d, rng = gg - gu, np.random.default_rng(0)
        boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(5000)]
        return dict(pairs=len(rs), gain_gated=gg.mean(), gain_ungated=gu.mean(), sd_gated=gg.std(ddof=1) if len(rs) > 1 else math.nan,
                    sd_ungated=gu.std(ddof=1) if len(rs) > 1 else math.nan, diff=d.mean(), diff_ci90=[float(np.quantile(boots, 0.05)), float(np.quantile(boots, 0.95))],
                    shrinkage_gated=float(np.mean([r["shrinkage_gated"] for r in rs])), shrinkage_ungated=float(np.mean([r["shrinkage_ungated"] for r in rs])),
                    gated_kept_baseline=sum(r["gated_kept_baseline"] for r in rs))
    per_task = {t: summary([r for r in rows if r["task"] == t]) for t in dict.fromkeys(r["task"] for r in rows)}
    overall = summary(rows)
    for t, s in {**per_task, "all": overall}.items():
        print(f"{t:10s} gated {s['gain_gated']:+.3f} (sd {s['sd_gated']:.3f})  ungated {s['gain_ungated']:+.3f} (sd {s['sd_ungated']:.3f})  "
              f"diff {s['diff']:+.3f} [{s['diff_ci90'][0]:+.3f}, {s['diff_ci90'][1]:+.3f}]  shrinkage {s['shrinkage_gated']:+.3f} vs {s['shrinkage_ungated']:+.3f}")
    path = write_result("gated_search", dict(args=vars(a) | {"runs_dir": "(the seed's runs directory)"}, rows=rows, per_task=per_task, overall=overall,
                                             planned_pairs=sum(len(CELLS[t]) for t in a.tasks.split(",")),
                                             wall_s=round(time.time() - t0)), a.out)
    print(f"written to {path}")

if __name__ == "__main__": main()
