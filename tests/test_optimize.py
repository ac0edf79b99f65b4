"optimize(): every built-in optimizer end to end with a scripted base model; caps, stop, errors, parse failures, timeouts; a real MLflow server."
import subprocess, sys, threading, time, urllib.request
from pathlib import Path

import dspy
import pytest
from conftest import free_port

from dspyopt_nb.data import load_task
from dspyopt_nb.engines.fake_server import FakeLMServer
from dspyopt_nb.engines.scripted import ScriptedEngine, scripted_lm, toy_sentiment
from dspyopt_nb.optimize import optimize
from dspyopt_nb.optimizers.protocol import _REGISTRY, register_optimizer
from dspyopt_nb.run.catalogue import load_result
from dspyopt_nb.run.errors import ConfigError, OptimizeError
from dspyopt_nb.run.events import read_events
from dspyopt_nb.run.plan import RunPlan
from dspyopt_nb.run.result import OptimizationResult

TASK = load_task("sst2")
SP = TASK.splits(n_train=30, n_val=20, n_test=60, seed=0)

def _opt(tmp_path, optimizer="bootstrap", lm=None, **kw):
    kw.setdefault("tracking", False)
    return optimize(TASK.program(), SP.train, kw.pop("metric", TASK.metric), valset=kw.pop("valset", SP.val), testset=kw.pop("testset", SP.test),
                    optimizer=optimizer, lm=lm or scripted_lm(toy_sentiment), run_dir=str(tmp_path / optimizer), progress=False, **kw)

@pytest.mark.parametrize("optimizer", ["mipro", "bootstrap", "simba", "gepa", "none"])
def test_each_builtin_optimizer_runs_end_to_end(tmp_path, tmp_cache, optimizer):
    kw = dict(max_metric_calls=400) if optimizer == "gepa" else {}
    res = _opt(tmp_path, optimizer, **kw)
    assert res.status == "finished" and len(res.optimized_scores) == len(SP.test)
    assert res.candidates[0].id == 0 and res.candidates[0].full          # the baseline on validation
    assert res.comparison["test"] and 0 <= res.comparison["p_value"] <= 1
    if optimizer in ("mipro", "bootstrap"):
        assert res.optimized > res.baseline, res.summary()                   # demos help the scripted model
    prog = res.load_program(TASK.program())                                # the best program is JSON state and loads back
    assert isinstance(prog, dspy.Module)
    assert OptimizationResult.load(tmp_path / optimizer / "result.json").program_state == res.program_state
    kinds = [e.kind for e in read_events(tmp_path / optimizer / "events.jsonl")]
    assert kinds[0] == "run_started" and kinds[-1] == "finished" and "candidate" in kinds

def test_gepa_gets_feedback_metric_and_the_same_budget(tmp_path, tmp_cache):
    seen = []
    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        ok = TASK.metric(gold, pred)
        seen.append(pred_name)
        return dspy.Prediction(score=ok, feedback="correct" if ok else f"expected {gold.sentiment}")
    res = _opt(tmp_path, "gepa", metric=metric, max_metric_calls=120)
    assert res.status in ("finished", "stopped") and len(seen) > 0
    # GEPA's re-scoring of its rollouts is not counted twice: it spends the cap it is given, no more, no less than half
    spent = res.usage["metric_calls"] - 2 * len(SP.test)
    assert 60 <= spent <= 120 + 4, spent

def test_metric_call_cap_stops_with_best_so_far(tmp_path, tmp_cache):
    res = _opt(tmp_path, "mipro", max_metric_calls=60)
    assert res.status == "stopped" and "metric-call cap" in res.message
    assert res.usage["metric_calls"] <= 60 + 2 * len(SP.test)       # the held-out evaluation is outside the cap
    assert len(res.optimized_scores) == len(SP.test)

def test_token_cap(tmp_path, tmp_cache):
    res = _opt(tmp_path, "bootstrap", max_tokens=3000)
    assert res.status == "stopped" and "token cap" in res.message

def test_cost_cap_binds_for_a_priced_local_model_and_is_refused_without_a_price(tmp_path, tmp_cache):
    with pytest.raises(ConfigError, match="price") as ei:
        optimize(config=dict(task="sst2", optimizer="bootstrap", max_cost=1.0, lm="local"), dry_run=True)
    assert "Fix:" in str(ei.value)
    res = _opt(tmp_path, "bootstrap", max_cost=0.01, price={"input": 1.0, "output": 2.0})
    assert res.status == "stopped" and "cost cap" in res.message, res.report()
    assert res.usage["cost"] >= 0.01 and res.usage["priced"]          # the held-out test runs past the cap, priced too

def test_stop_request_ends_cleanly(tmp_path, tmp_cache):
    halt = threading.Event()
    def stop_after_two(e):
        if e.kind == "candidate" and e.candidate >= 1: halt.set()
    res = _opt(tmp_path, "bootstrap", callbacks=[stop_after_two], stop=halt)
    assert res.status == "stopped" and res.message == "stopped on request"
    assert len(res.candidates) <= 3

def test_metric_and_lm_errors_are_recorded_not_fatal(tmp_path, tmp_cache):
    def flaky_model(prompt):
        if len(prompt.rsplit("\n\n", 1)[-1]) % 7 == 0: raise RuntimeError("backend hiccup")
        return toy_sentiment(prompt)
    def flaky_metric(ex, pred, trace=None):
        if len(ex.review) % 5 == 0: raise ValueError("cannot score")
        return TASK.metric(ex, pred, trace)
    res = _opt(tmp_path, "bootstrap", lm=dspy.LM("scripted/flaky", engine=ScriptedEngine(flaky_model), num_retries=0),
               metric=flaky_metric, max_errors=500)
    wheres = {e["where"] for e in res.errors}
    assert {"metric", "lm"} <= wheres and res.status == "finished", res.errors[:3]
    # too many errors: stop with the best so far, marked failed, nothing lost
    res2 = _opt(tmp_path / "2", "bootstrap", metric=lambda e, p, t=None: 1 / 0, max_errors=3)
    assert res2.status == "failed" and "max_errors=3" in res2.message
    assert (tmp_path / "2" / "bootstrap" / "result.json").exists()

def test_a_model_silent_zero_shot_is_wrong_not_broken(tmp_path, tmp_cache):
    "Issue 10.1: empty answers are parse failures (score 0, counted, one notice with the fix), never an aborted run."
    def mute(prompt): return "" if prompt.count("Sentiment:") < 3 else toy_sentiment(prompt)
    res = _opt(tmp_path, "bootstrap", lm=scripted_lm(mute), max_errors=3)
    assert res.status == "finished" and not res.errors, res.errors[:2]
    assert res.baseline == 0.0 and res.optimized > 0.6 and res.parse_failures >= len(SP.val)
    assert len(res.notices) == 1 and "could not be parsed" in res.notices[0] and "Fix:" in res.notices[0]
    assert res.report()  # renders with a baseline of 0 (no relative lift)

def test_lm_timeouts_are_retried_then_counted_as_errors(tmp_path, tmp_cache):
    "Issue 10.1: a server that hangs: each call times out, is retried per policy, then counts as an error of the run."
    with FakeLMServer(hang=True) as srv:
        L = srv.lm(timeout_s=0.3, retries=1, cache=False)
        t0 = time.time()
        res = _opt(tmp_path, "none", lm=L, valset=SP.val[:2], testset=SP.test[:2], max_errors=100)
        took, received = time.time() - t0, srv.stats.received
    assert res.status == "finished" and len(res.errors) == 6 and all(e["where"] == "lm" for e in res.errors)
    assert all("imeout" in e["message"] for e in res.errors), res.errors[0]
    assert received == 12                                 # 6 calls, each tried twice (retries=1)
    assert took < 30

def test_in_process_engine_timeout(tmp_path, tmp_cache):
    slow = scripted_lm(toy_sentiment, "slow", delay_s=0.2, timeout_s=0.05, num_retries=1)
    res = _opt(tmp_path, "none", lm=slow, valset=SP.val[:2], testset=SP.test[:2], max_errors=100)
    assert len(res.errors) == 6 and slow.engine.calls == 12 and "timeout_s" in res.errors[0]["message"]

def test_bad_arguments_fail_before_any_lm_call(tmp_path):
    eng = ScriptedEngine(toy_sentiment); L = dspy.LM("scripted/count", engine=eng)
    cases = [(dict(trainset=[]), "trainset is empty"), (dict(metric=lambda x: 1), "cannot be called"),
             (dict(optimizer="adam"), "unknown optimizer"), (dict(preset="huge"), "unknown preset"),
             (dict(max_metric_calls=5, valset=SP.val), "cannot fit one evaluation"), (dict(max_tokens=-1), "greater than 0"),
             (dict(trainset=[{"review": "x"}] * 5), "dspy.Example"), (dict(num_candidatez=3), "unknown knob"),
             (dict(max_metric_call=50), "did you mean 'max_metric_calls'")]
    for kw, msg in cases:
        args = dict(trainset=SP.train, metric=TASK.metric, lm=L, tracking=False, progress=False, run_dir=str(tmp_path / "x"), optimizer="mipro")
        args.update(kw)
        with pytest.raises(OptimizeError, match=msg) as ei:
            optimize(TASK.program(), args.pop("trainset"), args.pop("metric"), **args)
        assert "Fix" in str(ei.value)
    assert eng.calls == 0

def test_plugin_registers_like_builtins(tmp_path, tmp_cache):
    @register_optimizer("first-demos", presets={"light": dict(k=4)}, estimate=lambda k, nt, nv: 0)
    def first_demos(ctx):
        p = ctx.program.deepcopy()
        for _, pred in p.named_predictors(): pred.demos = ctx.trainset[: ctx.knobs["k"]]
        return p
    try:
        res = _opt(tmp_path, "first-demos")
        assert res.optimizer == "first-demos" and res.optimized >= res.baseline
    finally: _REGISTRY.pop("first-demos")

def test_dry_run_makes_no_lm_call(tmp_path):
    eng = ScriptedEngine(toy_sentiment)
    p = _opt(tmp_path, "mipro", lm=dspy.LM("scripted/dry", engine=eng), dry_run=True)
    assert isinstance(p, RunPlan) and p.estimate.lm_calls > 100 and eng.calls == 0 and p.run_id

def test_finished_run_is_returned_without_lm_calls(tmp_path, tmp_cache):
    first = _opt(tmp_path, "bootstrap")
    L = scripted_lm(toy_sentiment)
    again = _opt(tmp_path, "bootstrap", lm=L)
    assert again.program_state == first.program_state and L.engine.calls == 0

def test_threaded_evaluation_scores_like_sequential(tmp_path, tmp_cache):
    # regression: DSPy deep-copies the usage tracker per thread; a meter that could not be copied made every
    # example fail silently (baseline 0.0, no LM calls) as soon as num_threads > 1
    one = _opt(tmp_path / "1", "none", num_threads=1)
    four = _opt(tmp_path / "4", "none", num_threads=4)
    assert four.baseline_scores == one.baseline_scores and four.baseline > 0
    assert four.usage["metric_calls"] == one.usage["metric_calls"]

def test_dspy_log_lines_are_counted_not_printed(tmp_path, tmp_cache, capfd):
    "Issue 10.6: DSPy's log lines and prints during a run are summarised once in the result, not streamed."
    res = _opt(tmp_path, "bootstrap")
    out, err = capfd.readouterr()
    assert "Scores so far" not in out + err and "truncated" not in out + err
    assert any(k.startswith("print: ") for k in res.log_summary), res.log_summary

# --- a real MLflow tracking server on loopback -------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow-server"); port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    p = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                          "--backend-store-uri", f"sqlite:///{d}/server.db", "--artifacts-destination", str(d / "artifacts")],
                         stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):                                   # up to 60 s for the first migration of the store
        try:
            if urllib.request.urlopen(url + "/health", timeout=1).status == 200: break
        except Exception: time.sleep(0.25)
        if p.poll() is not None: break
    else: p.kill(); pytest.fail("mlflow server did not start:\n" + (d / "server.log").read_text()[-3000:])
    if p.poll() is not None: pytest.fail("mlflow server exited:\n" + (d / "server.log").read_text()[-3000:])
    yield url
    p.terminate(); p.wait(15)

@pytest.mark.slow
def test_tracking_against_a_real_mlflow_server(tmp_path, tmp_cache, mlflow_server):
    res = _opt(tmp_path, "bootstrap", tracking=mlflow_server, registered_model="toy-sentiment", experiment="server-test")
    assert res.mlflow_run_id and res.model_version == "1"
    back = load_result(res.mlflow_run_id, mlflow_server)
    assert back.program_state == res.program_state and back.optimized_scores == res.optimized_scores
    from mlflow.tracking import MlflowClient
    c = MlflowClient(mlflow_server)
    run = c.get_run(res.mlflow_run_id)
    assert run.data.params["optimizer"] == "bootstrap" and run.info.status == "FINISHED"
    assert "optimized_test" in run.data.metrics and "best_score" in run.data.metrics
    children = c.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{res.mlflow_run_id}'")
    assert len(children) == len(res.candidates)
    arts = {a.path for a in c.list_artifacts(res.mlflow_run_id)}
    assert {"program", "result.json", "candidates.csv", "report.html"} <= arts
    mv = c.get_model_version("toy-sentiment", "1")
    assert mv.run_id == res.mlflow_run_id

# --- the embedded model, for real -------------------------------------------------------------------------------

@pytest.mark.slow
def test_embedded_model_optimization(tmp_path):
    sp = TASK.splits(n_train=40, n_val=40, n_test=80, seed=1)
    res = optimize(TASK.program(), sp.train, TASK.metric, valset=sp.val, testset=sp.test, optimizer="bootstrap",
                   lm="local", run_dir=str(tmp_path / "real"), tracking=f"sqlite:///{tmp_path}/mlflow.db", progress=False)
    assert res.status == "finished" and res.usage["input_tokens"] > 1000
    assert res.optimized > res.baseline + 0.1, res.summary()
    assert res.comparison["p_value"] < 0.05, res.summary()

@pytest.mark.slow
def test_embedded_model_on_a_task_it_cannot_answer_zero_shot(tmp_path):
    "Issue 10.1: Banking77 (77 intents) with the embedded model: the baseline mostly fails to parse; the run completes."
    res = optimize(config=dict(task="banking77", optimizer="bootstrap", n_train=40, n_val=20, n_test=20, tracking=False,
                               knobs=dict(num_candidate_programs=1), run_dir=str(tmp_path / "b77"), max_errors=3), progress=False)
    assert res.status == "finished" and not res.errors, res.errors[:2]
    assert res.parse_failures > 10 and any("could not be parsed" in n for n in res.notices), res.report()
