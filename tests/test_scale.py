"Issue 15: many optimizations at once (local threads and a real Ray), the rate limiter against a real server, the sweep CLI, a Ray worker killed mid-run, the GPU bootstrap switch."
import json, os, signal, subprocess, sys, threading, time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dspyopt_nb.engines.fake_server import FakeLMServer
from dspyopt_nb.engines.http import http_lm
from dspyopt_nb.run.catalogue import list_runs, mlflow_client
from dspyopt_nb.scale.many import optimize_many, sweep
from dspyopt_nb.scale.ratelimit import Limit, RateLimiter

TOY = "scripted:dspyopt_nb.engines.scripted:toy_sentiment"
SMALL = dict(task="sst2", n_train=8, n_val=8, n_test=16, tracking=False)

@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs")); return tmp_path / "runs"

def test_rate_limiter_keeps_a_real_server_under_its_rate(tmp_cache):
    "A server refusing over 20 requests/s: unthrottled, calls get 429s (DSPy retries them); through the limiter, none."
    with FakeLMServer(max_rps=20, over_rate="429") as srv:
        from concurrent.futures import ThreadPoolExecutor
        L = http_lm(srv.model, srv.url, cache=False, retries=6)
        with ThreadPoolExecutor(16) as ex: list(ex.map(lambda i: L(f"Review: a{i}\nSentiment:"), range(16)))
        refused_free = srv.stats.rate_limited
        rl = RateLimiter({f"127.0.0.1:{srv.port}": Limit(rps=15, burst_s=0)})
        L2 = http_lm(srv.model, srv.url, cache=False, retries=0, limiter=rl)
        before, t0 = srv.stats.rate_limited, time.monotonic()
        with ThreadPoolExecutor(16) as ex: out = list(ex.map(lambda i: L2(f"Review: b{i}\nSentiment:"), range(30)))
        wall = time.monotonic() - t0
    assert refused_free > 0 and srv.stats.rate_limited == before and len(out) == 30 and wall > 1.5

def test_optimize_many_local_against_a_server_lands_in_catalogue_and_mlflow(runs, tmp_path, tmp_cache):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with FakeLMServer(latency_s=0.02) as srv:
        cfgs = sweep(dict(SMALL, optimizer="none", lm=f"http:fake-model@{srv.url}", tracking=uri, num_threads=4), {"seed": [0, 1]})
        out = optimize_many(cfgs, max_concurrent=3, progress=False)
    assert out.ok, out
    assert {r.run_id for r in list_runs()} == {r["run_id"] for r in out.rows}
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("dspyopt")
    tagged = client.search_runs([exp.experiment_id], "tags.`dspyopt.kind` = 'optimization'")
    assert {m.data.tags["dspyopt.run_id"] for m in tagged} == {r["run_id"] for r in out.rows}

def test_cli_sweep_runs_every_combination(runs, tmp_path):
    cfg = tmp_path / "a.yaml"; cfg.write_text(yaml.safe_dump(dict(SMALL, optimizer="none", lm=TOY)))
    p = subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", "run", str(cfg), "--sweep", "seed=0,1,2", "--json"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "DSPYOPT_NO_PROGRESS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout[p.stdout.index("["):])
    assert [r["status"] for r in rows] == ["finished"] * 3 and len(list_runs()) == 3
    p = subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", "run", str(cfg), "--sweep", "seed"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Fix:" in p.stderr

def test_compare_paired_uses_the_torch_bootstrap_when_asked(monkeypatch):
    pytest.importorskip("torch")
    from dspyopt_nb.stats import bootstrap_backend, compare_paired
    rng = np.random.default_rng(0); a, b = rng.binomial(1, .6, 300).astype(float), rng.binomial(1, .7, 300).astype(float)
    monkeypatch.delenv("DSPYOPT_BOOTSTRAP", raising=False)
    cpu = compare_paired(a, b)
    monkeypatch.setenv("DSPYOPT_BOOTSTRAP", "torch")
    gpu = compare_paired(a, b)
    assert bootstrap_backend() == "torch" and "torch" in gpu.why and "torch" not in cpu.why
    assert abs(gpu.ci[0] - cpu.ci[0]) < 0.02 and abs(gpu.ci[1] - cpu.ci[1]) < 0.02 and gpu.p_value == cpu.p_value

# ---- a real Ray: one local instance for the module

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    from dspyopt_nb.scale.many import ray_init
    ray_init(num_cpus=2)
    yield ray
    ray.shutdown()

def test_ray_worker_killed_mid_run_resumes_its_runs_none_lost_none_twice(ray_local, runs, tmp_path):
    "Four runs on two Ray actors; the process executing one of them is SIGKILLed; every run finishes exactly once."
    cache = tmp_path / "dspy_cache"
    os.environ["DSPY_CACHEDIR"] = str(cache)  # the workers' shared LM cache (read when they import DSPy)
    with FakeLMServer(latency_s=0.15) as srv:
        cfgs = sweep(dict(SMALL, optimizer="bootstrap", lm=f"http:fake-model@{srv.url}", num_threads=2,
                          knobs={"max_bootstrapped_demos": 4, "num_candidate_programs": 4}), {"seed": [0, 1, 2, 3]})
        box = {}
        t = threading.Thread(target=lambda: box.update(out=optimize_many(cfgs, backend="ray", workers=2, progress=False, poll_s=0.2)))
        t.start()
        victim, deadline = None, time.time() + 240
        while victim is None and time.time() < deadline and t.is_alive():  # a run 30+ metric calls in: kill its process
            for d in runs.glob("*/"):
                ev = d / "events.jsonl"
                calls = [json.loads(l).get("metric_calls", 0) for l in ev.read_text().splitlines() if '"budget"' in l] if ev.exists() else []
                holder = (d / ".lock").read_text() if (d / ".lock").exists() else ""
                if calls and max(calls) >= 30 and holder.startswith("pid "):
                    victim = (d, int(holder.split()[1])); break
            time.sleep(0.2)
        assert victim, "no run got far enough to be killed"
        os.kill(victim[1], signal.SIGKILL)
        t.join(300)
    out = box["out"]
    assert out.ok, out
    assert len({r["run_id"] for r in out.rows}) == 4 and len(list_runs()) == 4
    killed = [r for r in out.rows if r["run_dir"] == str(victim[0])]
    assert killed and killed[0]["attempts"] == 2, out
    events = [json.loads(l) for l in (victim[0] / "events.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "run_started" for e in events) == 2 and sum(e["kind"] == "finished" for e in events) == 1
    others = [r["lm_calls"] for r in out.rows if r["run_dir"] != str(victim[0])]
    assert killed[0]["lm_calls"] < max(others)  # its calls before the kill came from the shared LM cache

def test_ray_rate_limited_many_through_the_cluster_limiter(ray_local, runs):
    with FakeLMServer(latency_s=0.01, max_rps=40, over_rate="429") as srv:
        cfgs = sweep(dict(SMALL, optimizer="none", lm=f"http:fake-model@{srv.url}", num_threads=4, lm_retries=0), {"seed": [0, 1]})
        out = optimize_many(cfgs, backend="ray", workers=1, progress=False, rate_limits={f"127.0.0.1:{srv.port}": {"rps": 30, "burst_s": 0}})
        refused = srv.stats.rate_limited
    assert out.ok, out
    assert refused == 0
