"""Seed the knowledge base with real runs: the bundled tasks (sst2, agnews, banking77) and GSM8K from the shared data,
several optimizers, presets and seeds, with the embedded model. Two phases:

    .venv/bin/python benchmarks/seed_kb.py run   [--runs-dir DIR] [--max-minutes 100] [--dry-run]
    .venv/bin/python benchmarks/seed_kb.py build [--runs-dir DIR] [--out dspyopt_nb/data/insights/seed_kb.jsonl]

`run` executes the plan below as ordinary runs in the run catalogue under DIR (an interrupted seed resumes where it
stopped: finished runs are found by their run id and cost nothing); it stops launching runs after --max-minutes and
records what it did in DIR/seed_manifest.json (command, commit, versions, machine, one line per run). `build` syncs
those runs into a fresh knowledge base (`dspyopt_nb.insights.kb`) and exports it, with the manifest as provenance, to
the package's seed file; it also writes benchmarks/results/seed_kb.json (what was run, how long it took).
"""
import argparse, json, os, sys, time
from pathlib import Path
os.environ.setdefault("DSPYOPT_NO_PROGRESS", "1")
from _common import ROOT, provenance, write_result

GSM8K = os.environ.get("DSPYOPT_GSM8K", str(Path(ROOT).parent.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
N_TRAIN, N_TEST = 24, 30
# (task, seed, n_val): validation sizes alternate so the knowledge base sees shrinkage at two sizes
CELLS = {"sst2": [(0, 10), (1, 20), (2, 10), (3, 20)], "agnews": [(0, 10), (1, 20), (2, 10), (3, 20)],
         "banking77": [(0, 10), (1, 20)], "gsm8k": [(0, 10)]}
CORE = [("none", "light", {}), ("gated", "light", {"gate": True}), ("gated", "light", {"gate": False}), ("bootstrap", "light", {}),
        ("mipro", "light", dict(num_candidates=3, num_trials=5))]
EXTRA = [("ga", "light", dict(population_size=6, minibatch_size=6, bootstrap_examples=8, n_proposals=3)),
         ("gepa", "light", {}), ("simba", "light", {}), ("bootstrap", "medium", {}), ("bootstrap", "heavy", {})]
EXTRA_CELLS = {("ga", "light"): [("sst2", 0, 10), ("agnews", 0, 10), ("sst2", 1, 20), ("agnews", 1, 20)],
               ("gepa", "light"): [("sst2", 0, 10), ("agnews", 0, 10)], ("simba", "light"): [("sst2", 0, 10), ("agnews", 0, 10)],
               ("bootstrap", "medium"): [("sst2", 1, 20), ("agnews", 1, 20), ("banking77", 1, 20), ("gsm8k", 0, 10)],
               ("bootstrap", "heavy"): [("sst2", 1, 20), ("agnews", 1, 20)]}

def source(task: str) -> dict:
    if task == "gsm8k": return dict(dataset=GSM8K, signature="question -> final", metric="exact_match:final")
    return dict(task=task)

def plan_runs() -> list[dict]:
    "The runs, most informative first: each round of cells without MIPRO (slow on a loaded CPU), then its MIPRO runs, then the extras."
    out = []
    for i in range(max(map(len, CELLS.values()))):
        cells = [(task, *cells[i]) for task, cells in CELLS.items() if i < len(cells)]
        for slow in (False, True):
            for task, seed, n_val in cells:
                for opt, preset, knobs in CORE:
                    if (opt == "mipro") == slow: out.append(dict(task=task, seed=seed, n_val=n_val, optimizer=opt, preset=preset, knobs=knobs))
    for opt, preset, knobs in EXTRA:
        for task, seed, n_val in EXTRA_CELLS[opt, preset]:
            out.append(dict(task=task, seed=seed, n_val=n_val, optimizer=opt, preset=preset, knobs=knobs))
    return out

def settings(r: dict) -> dict:
    cap = None if r["optimizer"] == "none" else 5 * r["n_val"] + N_TRAIN   # one metric-call budget for every optimizer of a cell
    return dict(**source(r["task"]), optimizer=r["optimizer"], preset=r["preset"], knobs=r["knobs"], seed=r["seed"], n_train=N_TRAIN,
                n_val=r["n_val"], n_test=N_TEST, max_metric_calls=cap, tags={"dspyopt.origin": "seed", "dspyopt.seed_task": r["task"]})

def run(a):
    from dspyopt_nb.engines.lm import lm
    from dspyopt_nb.optimize import optimize
    # one llama.cpp thread: on a shared, oversubscribed machine its threads' spin barriers cost more than they give
    model = lm("local", n_threads=a.threads)
    runs_dir = Path(a.runs_dir).resolve(); runs_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = runs_dir / "seed_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else dict(sessions=[], runs={})
    manifest["sessions"].append(provenance())
    t0, todo = time.time(), plan_runs()
    print(f"{len(todo)} runs planned; runs in {runs_dir}", flush=True)
    for i, r in enumerate(todo):
        if time.time() - t0 > a.max_minutes * 60: print(f"stopping: --max-minutes {a.max_minutes} reached", flush=True); break
        s = settings(r)
        if a.dry_run:
            p = optimize(config=s, lm=model, dry_run=True, progress=False); print(p.summary()); continue
        t1 = time.time()
        try: res = optimize(config=s, lm=model, progress=False)
        except Exception as e:
            print(f"[{i + 1}/{len(todo)}] {r['task']} {r['optimizer']} seed {r['seed']}: FAILED {type(e).__name__}: {e}", flush=True)
            manifest["runs"][f"{r['task']}/{r['optimizer']}/{r['seed']}/{json.dumps(r['knobs'], sort_keys=True)}"] = dict(**r, error=str(e)); continue
        took = round(time.time() - t1, 1)
        manifest["runs"][res.run_id] = dict(**r, run_id=res.run_id, status=res.status, wall_s=took, baseline=res.baseline, optimized=res.optimized,
                                            validation_gain=res.validation_gain, metric_calls=res.usage.get("metric_calls"))
        manifest_path.write_text(json.dumps(manifest, indent=1, default=str))
        print(f"[{i + 1}/{len(todo)}] {r['task']} {r['optimizer']}/{r['preset']} {r['knobs'] or ''} seed {r['seed']} n_val {r['n_val']}: "
              f"{res.baseline:.3f} -> {res.optimized:.3f} ({res.status}, {took:.0f} s, total {(time.time() - t0) / 60:.1f} min)", flush=True)
    manifest["sessions"][-1]["wall_s"] = round(time.time() - t0)
    manifest_path.write_text(json.dumps(manifest, indent=1, default=str))

def build(a):
    from dspyopt_nb.insights.kb import KnowledgeBase
    runs_dir = Path(a.runs_dir).resolve()
    manifest = json.loads((runs_dir / "seed_manifest.json").read_text())
    kb = KnowledgeBase(f"sqlite:///{runs_dir / 'seed_kb.db'}")
    added = kb.sync(runs_dir)
    out = Path(a.out)
    n = kb.export(out, provenance=dict(made_by="benchmarks/seed_kb.py run, then build", run_sessions=manifest["sessions"], build=provenance()), paths=False)
    print(f"synced {added} runs; exported {n} records to {out} ({out.stat().st_size:,} bytes)")
    rows = list(manifest["runs"].values())
    write_result("seed_kb", dict(runs=len(rows), finished=sum(r.get("status") == "finished" for r in rows),
                                 wall_s=sum(s.get("wall_s", 0) for s in manifest["sessions"]), records=n, out=str(out.relative_to(ROOT)), rows=rows))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["run", "build"])
    ap.add_argument("--runs-dir", default=os.environ.get("DSPYOPT_SEED_RUNS", str(Path.home() / ".cache" / "dspyopt" / "seed_runs")))
    ap.add_argument("--max-minutes", type=float, default=100)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the embedded model")
    ap.add_argument("--out", default=str(ROOT / "dspyopt_nb" / "data" / "insights" / "seed_kb.jsonl"))
    a = ap.parse_args()
    os.environ["DSPYOPT_RUNS"] = str(Path(a.runs_dir).resolve())   # the seed's own run catalogue and MLflow store
    (run if a.phase == "run" else build)(a)

if __name__ == "__main__": main()
