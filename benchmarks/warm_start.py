"""Warm-start re-optimization against a cold start, side by side: metric calls each needs to reach the cold start's
final score on a window of new data, for the GA, GEPA and MIPROv2.

    python benchmarks/warm_start.py                       # all three, scripted model, 8 windows (a few minutes of CPU)
    python benchmarks/warm_start.py --optimizers gepa     # one of them
    python benchmarks/warm_start.py --windows 3 --lm local --optimizers ga   # the embedded model (slow: hours on 2 busy cores)

A run optimizes the SST-2 program on window 0 (30 train / 16 validation / 100 test reviews). Each later window w (other
reviews, split with seed w) is then optimized twice with the same optimizer, settings and seed: cold (from the
baseline program) and warm (`warm_start=` the window-0 run). What a warm start continues from: the GA's last
population; GEPA's Pareto front (its first proposals); MIPROv2's ranked instruction candidates (searched first, the
rest proposed anew); and for all, the window-0 program. A third run per window warm-starts from the window-0 program
alone (its program.json), to tell the search state's share from the program's. "calls to reach" is the metric-call count at which the run's
best full-validation score first reaches the cold run's final best: for the GA at the end of a generation (every
metric call of the run counted, the baseline's included), for GEPA at the discovery of a candidate (GEPA's own count
of its rollouts plus its seed's evaluation), for MIPROv2 at a full evaluation (the examples of every evaluation it
reported so far: its demo bootstrapping, the same for both, is left out).

The scripted models: for the GA the GA lesson's (`engines.scripted.search_sentiment`): it answers "negative" on a few
negative words when its instruction mentions negative words, on a few others when it sees 2+ demos, both together
best; as the proposer it answers one of four instructions (a hash of the prompt picks it). GEPA and MIPROv2 search
instructions on minibatches, where those few words rarely show a difference; their model reads every negative word
when its instruction mentions negative words and only two of them otherwise (demos do not matter), and as GEPA's
reflection LM it answers in the JSON GEPA's proposer asks for. The LM calls saved by not proposing instructions
again are counted too (lm_calls), though the comparison is on metric calls.
"""
import argparse, json, statistics, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from dspyopt_nb.engines.scripted import SEARCH_NEGATIVES, search_proposal, search_sentiment  # noqa: E402

def instruction_model(prompt: str) -> str:
    "GEPA's and MIPROv2's scripted model: the instruction decides how many negative words it reads; demos do not matter."
    query = prompt.rsplit("\n\n", 1)[-1]
    if query.endswith("Sentiment:"):
        words = SEARCH_NEGATIVES[0] + SEARCH_NEGATIVES[1] if "negative words" in prompt.split("\n\n", 1)[0].lower() else SEARCH_NEGATIVES[0][:2]
        return " negative" if any(w in query.lower() for w in words) else " positive"
    if "new_instruction" in prompt: return json.dumps({"new_instruction": search_proposal(prompt)})   # GEPA's proposer (JSON)
    return " " + search_proposal(prompt)


def _best_so_far(points) -> list[tuple[int, float]]:
    out, best = [], float("-inf")
    for calls, score in points:
        best = max(best, score); out.append((calls, best))
    return out


def trajectory(result, optimizer: str, n_val: int) -> list[tuple[int, float]]:
    "(metric calls, best full-validation score so far) at each point the optimizer's best can change."
    from dspyopt_nb.run.events import CandidateEvaluated, read_events
    run_dir = Path(result.run_dir)
    evs = read_events(run_dir / "events.jsonl")
    if optimizer == "ga":
        from dspyopt_nb.optimizers.ga.optimizer import GenerationFinished
        return [(e.metric_calls, e.best_full) for e in evs if isinstance(e, GenerationFinished) and e.best_full is not None]
    if optimizer == "gepa":   # GEPA's count of its rollouts when it found each candidate, after its seed's evaluation on validation
        found = json.loads((run_dir / "gepa_front.json").read_text())["discovered"]
        return _best_so_far(sorted((int(c) + n_val, s) for c, s in found))
    points, calls = [], 0     # MIPROv2: every evaluation it reports (the runner's sparse budget events are too coarse)
    for e in evs:
        if isinstance(e, CandidateEvaluated):
            calls += e.n
            if e.full: points.append((calls, e.score))
    return _best_so_far(points)


def calls_to_reach(traj, target: float) -> int | None:
    return next((c for c, s in traj if s >= target - 1e-12), None)


KNOBS = {"ga": {}, "gepa": dict(max_metric_calls=200), "mipro": dict(num_candidates=4, num_trials=12, minibatch_size=8)}


def compare(a, optimizer: str) -> dict:
    "Window 0, then each later window cold and warm, for one optimizer."
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.lm import lm as make_lm
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    task, root = load_task("sst2"), Path(tempfile.mkdtemp(prefix=f"warm-start-{optimizer}-"))
    model = scripted_lm(search_sentiment if optimizer == "ga" else instruction_model) if a.lm == "scripted" else make_lm(a.lm)

    def run(name, sp, seed, **kw):
        return optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=optimizer, preset=a.preset,
                        knobs=KNOBS[optimizer], seed=seed, lm=model, run_dir=str(root / name), tracking=False, progress=False, **kw)

    first = run("window-0", task.splits(n_train=a.n_train, n_val=a.n_val, n_test=100, seed=0), 0)
    rows = []
    for w in range(1, a.windows + 1):
        sp = task.splits(n_train=a.n_train, n_val=a.n_val, n_test=100, seed=w)
        cold, warm = run(f"cold-{w}", sp, w), run(f"warm-{w}", sp, w, warm_start=first.run_dir)
        program_only = run(f"program-only-{w}", sp, w, warm_start=str(Path(first.run_dir) / "program.json"))   # its program, not its search
        tc, tw, tp = (trajectory(r, optimizer, len(sp.val)) for r in (cold, warm, program_only))
        target = max(s for _, s in tc)
        row = dict(window=w, cold_best=target, warm_best=max(s for _, s in tw), cold_calls_to_target=calls_to_reach(tc, target),
                   warm_calls_to_target=calls_to_reach(tw, target), program_only_calls_to_target=calls_to_reach(tp, target),
                   cold_total_calls=cold.usage["metric_calls"],
                   warm_total_calls=warm.usage["metric_calls"], cold_lm_calls=cold.usage["lm_calls"], warm_lm_calls=warm.usage["lm_calls"],
                   cold_test=cold.optimized, warm_test=warm.optimized, cold_trajectory=tc, warm_trajectory=tw)
        rows.append(row)
        print(f"{optimizer} window {w}: cold best {target:.3f} after {row['cold_calls_to_target']} calls; warm reaches it after "
              f"{row['warm_calls_to_target']} calls (warm best {row['warm_best']:.3f}; from the program alone after {row['program_only_calls_to_target']}); "
              f"test cold {cold.optimized:.3f} warm {warm.optimized:.3f}", flush=True)
    ratios = [r["warm_calls_to_target"] / r["cold_calls_to_target"] for r in rows if r["warm_calls_to_target"] and r["cold_calls_to_target"]]
    reached = [r["warm_calls_to_target"] for r in rows if r["warm_calls_to_target"] is not None]
    alone = [r["program_only_calls_to_target"] for r in rows if r["program_only_calls_to_target"] is not None]
    summary = dict(windows=len(rows), warm_reached=len(reached),
                   median_calls_cold=statistics.median(r["cold_calls_to_target"] for r in rows),
                   median_calls_warm=statistics.median(reached) if reached else None,
                   median_ratio_warm_over_cold=statistics.median(ratios) if ratios else None,
                   median_calls_program_only=statistics.median(alone) if alone else None,
                   first_window=dict(run_id=first.run_id, best=first.optimized))
    print(optimizer, summary, flush=True)
    return dict(knobs=KNOBS[optimizer], summary=summary, rows=rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optimizers", nargs="+", default=["ga", "gepa", "mipro"], choices=["ga", "gepa", "mipro"])
    ap.add_argument("--windows", type=int, default=8, help="new-data windows (each optimized cold and warm)")
    ap.add_argument("--lm", default="scripted", help="'scripted' (the scripted models above) or an lm() spec such as 'local'")
    ap.add_argument("--preset", default="light")
    ap.add_argument("--n-train", type=int, default=30); ap.add_argument("--n-val", type=int, default=16)
    a = ap.parse_args()
    results = {o: compare(a, o) for o in a.optimizers}
    print("\n".join(f"{o}: warm reached the cold best in {r['summary']['warm_reached']}/{r['summary']['windows']} windows; median calls "
                    f"cold {r['summary']['median_calls_cold']} vs warm {r['summary']['median_calls_warm']} (program alone "
                    f"{r['summary']['median_calls_program_only']}), median ratio warm/cold {r['summary']['median_ratio_warm_over_cold']}"
                    for o, r in results.items()))
    write_result("warm_start", dict(lm=a.lm if a.lm != "scripted" else "scripted: search_sentiment for the GA, instruction_model for GEPA and MIPROv2",
                                    preset=a.preset, n_train=a.n_train, n_val=a.n_val, optimizers=results))


if __name__ == "__main__":
    main()
