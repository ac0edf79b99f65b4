"""What every benchmark writes beside its numbers: the command that made them, the commit, package versions and the machine.

    from _common import write_result
    write_result("overhead", dict(rows=...))      # benchmarks/results/overhead.json

Results are written by the scripts that measure them, never by hand (the before-stop hook checks for "command" and
"commit"). `make bench` runs every benchmark at a size that fits this machine.
"""
import datetime as dt, importlib.metadata, json, os, platform, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

def _git(*args) -> str | None:
    try: return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception: return None

def machine() -> dict:
    "CPU model and count, memory, OS, and the GPU when torch sees one."
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    out = dict(platform=platform.platform(), python=platform.python_version(), cpu=cpu, cpu_count=os.cpu_count())
    try:
        import psutil
        out["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except Exception: pass
    if "torch" in sys.modules:
        import torch
        if torch.cuda.is_available(): out["gpu"] = torch.cuda.get_device_name(0)
    return out

def versions() -> dict:
    out = {}
    for p in ("dspyopt_nb", "dspy", "mlflow", "llama-cpp-python", "torch", "transformers", "litellm", "ray", "fastapi", "numpy", "scipy"):
        try: out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError: pass
    return out

def provenance() -> dict:
    "The command line, the commit (and whether the tree had changes), versions and the machine."
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return dict(command=" ".join([Path(sys.executable).name, *[str(a) for a in sys.argv]]), commit=os.environ.get("DSPYOPT_COMMIT") or _git("rev-parse", "HEAD"),
                dirty=bool(dirty), versions=versions(), machine=machine(), written=dt.datetime.now().astimezone().isoformat(timespec="seconds"))

def write_result(name: str, data: dict, out=None) -> Path:
    "Write benchmarks/results/<name>.json (or `out`): provenance first, then the measurement."
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**provenance(), **data}, indent=1, default=str))
    os.replace(tmp, path)
    return path

class Timer:
    "with Timer() as t: ...; t.s"
    def __enter__(self): self.t0 = time.perf_counter(); return self
    def __exit__(self, *a): self.s = time.perf_counter() - self.t0
