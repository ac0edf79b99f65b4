"""Start-up of the `dspyopt` command against `python -c pass`, side by side in one run (issue 10: < 0.5 s over it).

    .venv/bin/python benchmarks/startup.py [--rounds 7]

Times `dspyopt --help`, `dspyopt runs list` and `dspyopt validate <config>` (a bundled task with the embedded model), each
in a fresh process, and reports the median and the excess over the bare interpreter.
"""
import argparse, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from _common import write_result

ap = argparse.ArgumentParser(); ap.add_argument("--rounds", type=int, default=7); ap.add_argument("--out", default=None)
a = ap.parse_args()
tmp = Path(tempfile.mkdtemp())
(tmp / "job.yaml").write_text("task: sst2\noptimizer: mipro\nlm: local\n")
env_runs = {"DSPYOPT_RUNS": str(tmp / "runs")}
cases = {"python -c pass": [sys.executable, "-c", "pass"],
         "dspyopt --help": [sys.executable, "-m", "dspyopt_nb.cli", "--help"],
         "dspyopt runs list": [sys.executable, "-m", "dspyopt_nb.cli", "runs", "list"],
         "dspyopt validate job.yaml": [sys.executable, "-m", "dspyopt_nb.cli", "validate", str(tmp / "job.yaml")]}
import os
times = {k: [] for k in cases}
for i in range(a.rounds + 1):
    for k, cmd in cases.items():
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env_runs})
        if p.returncode not in (0,): raise SystemExit(f"{k} failed: {p.stderr[-500:]}")
        if i: times[k].append(time.perf_counter() - t)   # the first round warms the file cache
med = {k: statistics.median(v) for k, v in times.items()}
base = med["python -c pass"]
for k, v in med.items(): print(f"  {k:28s} {v * 1e3:7.0f} ms   {'' if k.startswith('python') else f'+{(v - base) * 1e3:.0f} ms over python (goal < 500)'}")
path = write_result("startup", dict(rounds=a.rounds, median_s={k: round(v, 4) for k, v in med.items()},
                                     over_python_s={k: round(v - base, 4) for k, v in med.items()}, goal_over_python_s=0.5), a.out)
print(f"written to {path}")
