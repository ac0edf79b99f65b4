"""A whole optimization cycle against the loopback fake LM server at a realistic latency: baseline, a medium-preset
optimizer on a 500-example task, the held-out proof, MLflow logging and model registration; measured wall time beside
the planner's prediction (made before the run from the model's measured latency, recorded by a small calibration run).

    python benchmarks/cycle.py                                   # MIPROv2 medium, 1 s per call, 32 calls at once
    python benchmarks/cycle.py --optimizer gepa --latency 0.5

Goal: the medium cycle in < 2 h at 1 s per call, and the prediction within ±20 % of the measured time.
Writes benchmarks/results/cycle.json.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_result

def phases(events_file: Path) -> list[dict]:
    "Seconds spent in each phase the run announced (baseline, optimizing, held-out test), from its events."
    ev = [json.loads(l) for l in events_file.read_text().splitlines()]
    marks = [(e["t"], e["phase"]) for e in ev if e.get("kind") == "eval_progress"]
    marks = [m for i, m in enumerate(marks) if i == 0 or m[1] != marks[i - 1][1]] + [(ev[-1]["t"], "end")]
    return [dict(phase=p, seconds=round(t2 - t1, 1)) for (t1, p), (t2, _) in zip(marks, marks[1:])]

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optimizer", default="mipro"); ap.add_argument("--preset", default="medium")
    ap.add_argument("--latency", type=float, default=1.0); ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=200); ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=200); ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    os.environ.update(DSPYOPT_RUNS=str(tmp / "runs"), DSPY_CACHEDIR=str(tmp / "dspy_cache"), DSPYOPT_NO_PROGRESS="1")
    from dspyopt_nb.engines.fake_server import serve_process
    from dspyopt_nb.run.execute import execute
    from dspyopt_nb.run.plan import latency_of, plan
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    load0 = os.getloadavg()[0]
    with serve_process(latency_s=a.latency) as srv:
        lm = f"http:cycle@{srv.url}"
        # calibration: a small run times the model (its latency goes to <runs>/lm_latency.json, as any run's does)
        cal = execute(plan(dict(task="sst2", optimizer="none", n_train=10, n_val=64, n_test=64, seed=99, lm=lm,
                                num_threads=a.threads, tracking=False)), progress=False)
        p = plan(dict(task="sst2", optimizer=a.optimizer, preset=a.preset, n_train=a.n_train, n_val=a.n_val, n_test=a.n_test,
                      lm=lm, num_threads=a.threads, tracking=uri, registered_model="cycle-bench"))
        print(f"plan: {p.summary()}", flush=True)
        t0 = time.monotonic()
        res = execute(p, progress=True)
        wall = time.monotonic() - t0
        served = srv.stats()
    pred = p.estimate.seconds
    row = dict(optimizer=a.optimizer, preset=a.preset, knobs=p.knobs, latency_s=a.latency, num_threads=a.threads,
               n_examples=a.n_train + a.n_val + a.n_test, n_train=a.n_train, n_val=a.n_val, n_test=a.n_test,
               measured_s_per_call=latency_of(p.lm_name), calibration_wall_s=(cal.usage or {}).get("wall_s"),
               predicted_s=pred, measured_s=round(wall, 1), prediction_error=round(pred / wall - 1, 3) if pred else None,
               estimated_metric_calls=p.estimate.metric_calls, metric_calls=res.usage.get("metric_calls"),
               estimated_lm_calls=p.estimate.lm_calls, lm_calls=res.usage.get("lm_calls"), server_requests=served["answered"],
               status=res.status, baseline=res.baseline, optimized=res.optimized, p_value=(res.comparison or {}).get("p_value"),
               registered=bool(res.model_version) if hasattr(res, "model_version") else None, mlflow_run_id=res.mlflow_run_id,
               phases=phases(Path(p.run_dir) / "events.jsonl"), load_avg_before=round(load0, 2), load_avg_after=round(os.getloadavg()[0], 2))
    row.update(under_2h=wall < 7200, within_20pct=pred is not None and abs(pred / wall - 1) <= 0.2)
    path = write_result("cycle", row, a.out)
    print(json.dumps(row, indent=1, default=str)); print(f"wrote {path}")

if __name__ == "__main__": main()
