"""Paired BCa bootstrap, 10,000 resamples x 10,000 examples: torch path vs scipy.stats.bootstrap, in one run.

Usage: python benchmarks/bootstrap.py [--n 10000] [--resamples 10000] [--repeat 3]

Two kinds of per-example scores, because the torch path samples them differently:
- binary 0/1 scores (exact match, pass/fail: the usual dspyopt metric). The differences b - a take 3 values, so
  torch draws each resample's multinomial counts (exact, k draws per resample instead of n).
- continuous scores (F1-like). Every difference is distinct, so torch draws n random indices per resample and
  gathers; this is the general, memory-bound case.
Both paths compute BCa intervals (torch in closed form for the mean). scipy runs on the CPU; torch runs on the CPU in
the same process, and on CUDA too when a GPU is present. Times are the best of --repeat runs.
"""
import argparse, sys, time
from pathlib import Path

import numpy as np
import scipy
import scipy.stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from dspyopt_nb.gpu_stats import torch_paired_bootstrap  # noqa: E402


def best_time(fn, repeat):
    "Best wall time of `repeat` calls, and the last result."
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def scipy_bca(a, b, n_resamples, seed):
    d = b - a
    res = sps.bootstrap((d,), np.mean, n_resamples=n_resamples, method="BCa", batch=1000,
                        rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import torch

    n, B = args.n, args.resamples
    rng = np.random.default_rng(0)
    datasets = {
        "binary 0/1 scores": (rng.binomial(1, 0.70, n).astype(float), rng.binomial(1, 0.72, n).astype(float)),
        "continuous scores": (rng.beta(5, 3, n), np.clip(rng.beta(5, 3, n) + 0.01, 0, 1)),
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"paired BCa bootstrap of mean(b - a): {B:,} resamples x {n:,} examples; best of {args.repeat}")
    print("both paths compute BCa intervals (no percentile fallback); scipy batch=1000")
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}, "
          f"cpu threads {torch.get_num_threads()}"
          + (f", cuda device: {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no cuda device"))
    # warm-up: imports, allocator and (on cuda) context creation are not part of the timing
    for dev in devices: torch_paired_bootstrap([0.0, 1.0] * 50, [1.0, 1.0] * 50, 100, 0, dev)
    for name, (a, b) in datasets.items():
        t_scipy, ci_scipy = best_time(lambda: scipy_bca(a, b, B, 0), args.repeat)
        print(f"\n[{name}]")
        print(f"  scipy.stats.bootstrap (cpu, BCa)       {t_scipy:8.3f} s   CI [{ci_scipy[0]:+.5f}, {ci_scipy[1]:+.5f}]")
        for dev in devices:
            def run():
                out = torch_paired_bootstrap(a, b, B, 0, dev, method="BCa")
                if dev == "cuda": torch.cuda.synchronize()
                return out
            t_torch, res = best_time(run, args.repeat)
            print(f"  torch_paired_bootstrap ({dev:4s}, BCa)   {t_torch:8.3f} s   CI [{res.ci[0]:+.5f}, {res.ci[1]:+.5f}]"
                  f"   sampler: {res.sampler}")
            ratio = t_scipy / t_torch
            print(f"    speed-up over scipy on {dev}: {ratio:8.1f}x  (goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
            # agreement: independent random streams, so endpoints differ by Monte Carlo error only (at 10,000
            # resamples about 0.03-0.15 bootstrap SEs; more for 0/1 data, whose bootstrap means are discrete)
            gap = max(abs(res.ci[0] - ci_scipy[0]), abs(res.ci[1] - ci_scipy[1])) / res.se
            print(f"    largest endpoint gap vs scipy: {gap:.3f} bootstrap SEs")


if __name__ == "__main__":
    main()
