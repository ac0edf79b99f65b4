"""The README's main job, measured: `make demo`'s command in a fresh run catalogue, LM cache and MLflow store.

    .venv/bin/python benchmarks/demo.py          # ~5 min on an idle 2-core machine

Writes benchmarks/results/demo.json: wall time, held-out baseline and optimized accuracy, the paired test, and the
machine's load before and after (a busy machine makes the time longer, not the scores different).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
from _common import ROOT, write_result

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="result file (default benchmarks/results/demo.json)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dspyopt-demo-"))
    env = {**os.environ, "DSPYOPT_RUNS": str(tmp / "runs"), "DSPY_CACHEDIR": str(tmp / "dspy-cache"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "DSPYOPT_NO_PROGRESS": "1"}
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from dspyopt_nb.demo import main; main()"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((l for l in proc.stdout.splitlines() if l.startswith("DSPYOPT_RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"the demo failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r = json.loads(line.split(" ", 1)[1])
    report = proc.stdout[proc.stdout.rfind("=" * 78, 0, proc.stdout.rfind("=" * 78)):]
    print(report)
    print(f"wall {wall:.0f} s (load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after)")
    path = write_result("demo", dict(wall_s=round(wall, 1), load_avg_before=round(load0, 2), load_avg_after=round(os.getloadavg()[0], 2),
                                     result=r, report=report), args.out)
    print(f"wrote {path}")

if __name__ == "__main__":
    main()
