"End to end with the embedded model: SST-2's zero-shot program and the one a real optimize() run registered, served over HTTP; simulated users' feedback makes the rollout promote the optimized version, then injected errors roll it back."
import random, time
import httpx
import pytest

from dspyopt_nb.serve.client import RuntimeClient
from test_serve import server, traffic, wait_for

@pytest.mark.slow
def test_optimize_register_serve_experiment_promote_rollback(tmp_path, tmp_cache):
    from dspyopt_nb.data import load_task
    from dspyopt_nb.optimize import optimize
    from dspyopt_nb.serve.registry import aliases, register_program, register_result
    uri, db = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/store.db"
    task = load_task("sst2")
    # optimize (small): the optimized program is registered by the run's tracker as a model version
    res = optimize(task="sst2", optimizer="bootstrap", n_train=8, n_val=8, n_test=16, lm="local", tracking=uri,
                   registered_model="sst2-e2e", run_dir=str(tmp_path / "run"), experiment="e2e")
    assert res.status == "finished" and res.program_state.get("demos"), res.summary()
    v_opt = register_result(res, "sst2-e2e", alias="candidate", tracking_uri=uri)
    v_zero = register_program(task.program(), "sst2-e2e", "task:sst2", alias="production", tracking_uri=uri)
    pool = task.splits(n_train=8, n_val=8, n_test=40, seed=3).test     # the users' reviews, held out from the run
    with server(tmp_path, db, uri, "--rollout-interval", "0.5", "--chaos", lm="local") as (proc, base):
        client = RuntimeClient(base, timeout=120)
        name = "e2e-optimized"
        client.start_experiment(dict(name=name, program="sst2-e2e", unit="request", metric="label", stages=[0.5], mde=0.35, p_base=0.45,
                                     n_min=15, monitor_units=100_000,
                                     variants=[dict(name="zero-shot", ref="production"), dict(name="optimized", ref="candidate")],
                                     guardrails=[dict(metric="error_rate", max_increase=0.2, min_samples=15)]))
        rng = random.Random(0)
        e = wait_for(client, name, ("promoted", "rolled_back", "completed"),
                     lambda: traffic(client, pool, 16, rng, threads=2, program="sst2-e2e"), tries=30)
        assert e["status"] == "promoted" and e["winner"] == "optimized", client.decisions(name)
        assert aliases("sst2-e2e", uri)["production"] == v_opt
        httpx.post(f"{base}/v1/chaos", json={"version": v_opt, "error_rate": 0.6}).raise_for_status()
        wait_for(client, name, ("rolled_back",), lambda: traffic(client, pool, 16, rng, threads=2, program="sst2-e2e"), tries=20)
        assert aliases("sst2-e2e", uri)["production"] == v_zero
        assert [d["kind"] for d in client.decisions(name)] == ["started", "promoted", "rolled_back"]
