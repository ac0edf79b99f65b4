"""Warm-start re-optimization against a cold start, side by side: metric calls each needs to reach the cold start's
final score on a window of new data.

    python benchmarks/warm_start.py                  # scripted model, 8 windows (about a minute of CPU)
    python benchmarks/warm_start.py --windows 3 --lm local   # the embedded model (slow: hours on 2 busy cores)

A GA run optimizes the SST-2 program on window 0 (30 train / 16 validation / 100 test reviews). Each later window w (other
reviews, split with seed w) is then optimized twice with the same GA settings and seed: cold (from the baseline
program) and warm (`warm_start=` the window-0 run: its program and its last population). Both count every metric
call, the baseline's evaluation on validation included. "calls to reach" is the metric-call count at the end of the
first generation whose best full-validation score is at least the cold run's final best.

The scripted model is the GA lesson's (tests/test_ga.py uses it too): it answers "negative" on a few negative words
when its instruction mentions negative words, on a few others when it sees 2+ demos, both together best; as the
proposer it answers one of four instructions (a hash of the prompt picks it). The LM calls saved by not proposing
instructions again are counted too (lm_calls), though the comparison is on metric calls.
"""
import argparse, hashlib, statistics, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

NEG_A, NEG_B = ("bad", "dull", "worst", "boring", "mess"), ("n't", "fails", "unfunny", "lack", "tired", "flat", "no ", "never")
PROPOSALS = ["Decide whether the review is positive or negative.", "Answer negative when the review has negative words such as dull or bad.",
             "Read the review carefully and give its sentiment.", "Say positive unless the review uses negative words."]


def ga_model(prompt: str) -> str:
    "The GA lesson's scripted model (tests/test_ga.py uses it too)."
    query = prompt.rsplit("\n\n", 1)[-1]
    if query.endswith("Sentiment:"):
        header = prompt.split("\n\n", 1)[0].lower()
        words = (NEG_A if "negative words" in header else ()) + (NEG_B if prompt.count("Sentiment:") >= 3 else ())
        return " negative" if any(w in query.lower() for w in words) else " positive"
    return " " + PROPOSALS[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(PROPOSALS)]


def trajectory(result) -> list[tuple[int, float]]:
    "(metric calls, best full-validation score) at the end of each generation."
    from dspyopt_nb.optimizers.ga.optimizer import GenerationFinished
    from dspyopt_nb.run.events import read_events
    evs = [e for e in read_events(Path(result.run_dir) / "events.jsonl") if isinstance(e, GenerationFinished)]
    return [(e.metric_calls, e.best_full) for e in evs if e.best_full is not None]


def calls_to_reach(traj, target: float) -> int | None:
    return next((c for c, s in traj if s >= target - 1e-12), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=8, help="new-data windows (each optimized cold and warm)")
    ap.add_argument("--lm", default="scripted", help="'scripted' (the GA lesson's model) or an lm() spec such as 'local'")
    ap.add_argument("--preset", default="light")
    ap.add_argument("--n-train", type=int, default=30); ap.add_argument("--n-val", type=int, default=16)
    a = ap.parse_args()
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.lm import lm as make_lm
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    task, root = load_task("sst2"), Path(tempfile.mkdtemp(prefix="warm-start-"))
    model = scripted_lm(ga_model) if a.lm == "scripted" else make_lm(a.lm)

    def run(name, sp, seed, **kw):
        return optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer="ga", preset=a.preset,
                        seed=seed, lm=model, run_dir=str(root / name), tracking=False, progress=False, **kw)

    first = run("window-0", task.splits(n_train=a.n_train, n_val=a.n_val, n_test=100, seed=0), 0)
    rows = []
    for w in range(1, a.windows + 1):
        sp = task.splits(n_train=a.n_train, n_val=a.n_val, n_test=100, seed=w)
        cold, warm = run(f"cold-{w}", sp, w), run(f"warm-{w}", sp, w, warm_start=first.run_dir)
        tc, tw = trajectory(cold), trajectory(warm)
        target = max(s for _, s in tc)
        row = dict(window=w, cold_best=target, warm_best=max(s for _, s in tw), cold_calls_to_target=calls_to_reach(tc, target),
                   warm_calls_to_target=calls_to_reach(tw, target), cold_total_calls=cold.usage["metric_calls"],
                   warm_total_calls=warm.usage["metric_calls"], cold_lm_calls=cold.usage["lm_calls"], warm_lm_calls=warm.usage["lm_calls"],
                   cold_test=cold.optimized, warm_test=warm.optimized, cold_trajectory=tc, warm_trajectory=tw)
        rows.append(row)
        print(f"window {w}: cold best {target:.3f} after {row['cold_calls_to_target']} calls; warm reaches it after "
              f"{row['warm_calls_to_target']} calls (warm best {row['warm_best']:.3f}); test cold {cold.optimized:.3f} warm {warm.optimized:.3f}")
    ratios = [r["warm_calls_to_target"] / r["cold_calls_to_target"] for r in rows if r["warm_calls_to_target"] and r["cold_calls_to_target"]]
    summary = dict(windows=len(rows), warm_reached=sum(r["warm_calls_to_target"] is not None for r in rows),
                   median_calls_cold=statistics.median(r["cold_calls_to_target"] for r in rows),
                   median_calls_warm=statistics.median(r["warm_calls_to_target"] for r in rows if r["warm_calls_to_target"] is not None),
                   median_ratio_warm_over_cold=statistics.median(ratios) if ratios else None,
                   first_window=dict(run_id=first.run_id, best=first.optimized))
    print(summary)
    write_result("warm_start", dict(lm=a.lm if a.lm != "scripted" else "scripted: the GA lesson's ga_model", preset=a.preset,
                                    n_train=a.n_train, n_val=a.n_val,
                                    summary=summary, rows=rows))


if __name__ == "__main__":
    main()
