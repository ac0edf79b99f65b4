"Continuous learning: detectors on simulated streams, the trigger policy, the gate, warm start, and the learner end to end on SQLite and PostgreSQL."
import json, random, uuid
from pathlib import Path

import dspy
import pytest

from dspyopt_nb.data import load_task
from dspyopt_nb.engines.adapter import AutoAdapter
from dspyopt_nb.engines.scripted import toy_lm
from dspyopt_nb.learn.gate import gate, gate_scores
from dspyopt_nb.learn.inputs import InputDrift, PredictionDrift
from dspyopt_nb.learn.interfaces import MemoryGateway, MemoryRegistry, MemoryTraceSource
from dspyopt_nb.learn.launch import DirectLauncher
from dspyopt_nb.learn.learner import Learner, LeaseLost
from dspyopt_nb.learn.models import Decision, Trigger
from dspyopt_nb.learn.performance import ScoreDetector
from dspyopt_nb.learn.policy import PolicyState, TriggerPolicy, decide
from dspyopt_nb.learn.streams import replay, score_alarms, simulate, with_feedback
from dspyopt_nb.store.db import session


# ---------------------------------------------------------------- detectors on simulated streams

@pytest.mark.parametrize("make", [lambda: ScoreDetector("adwin"), lambda: ScoreDetector("page_hinkley"), lambda: InputDrift(),
                                  lambda: PredictionDrift()], ids=["adwin", "page_hinkley", "input", "answers"])
def test_detector_finds_an_abrupt_switch_and_keeps_quiet_on_a_stable_stream(make):
    abrupt = simulate("abrupt", 3500, change_at=2000, target="agnews", seed=3)
    r = score_alarms(replay(make(), abrupt), abrupt)
    assert r["detected"] and r["delay"] <= 500 and r["false_alarms"] == 0, r
    stable = simulate("stable", 6000, seed=4)
    assert score_alarms(replay(make(), stable), stable)["false_alarms"] == 0


def test_performance_detector_with_late_partial_feedback():
    "30% of requests labelled, up to 100 requests late: ADWIN still finds the switch, later, and raises nothing before it."
    s = with_feedback(simulate("abrupt", 4000, change_at=2000, seed=5), fraction=0.3, max_delay=100, seed=5)
    r = score_alarms(replay(ScoreDetector("adwin"), s), s)
    assert r["detected"] and r["false_alarms"] == 0 and r["delay"] < 1000, r


def test_input_detectors_ignore_label_noise():
    "Label noise changes the scores, not the inputs: the input detector stays quiet, a performance detector fires."
    s = simulate("label_noise", 5000, change_at=2500, noise=0.3, seed=6)
    assert score_alarms(replay(InputDrift(), s), s)["detected"] is False
    assert score_alarms(replay(ScoreDetector("adwin"), s), s)["detected"]


# ---------------------------------------------------------------- the trigger policy

def _state(**kw):
    base = dict(program="p", now=10_000.0, open_alarms=[(1, "performance", "adwin")], new_labels=500, next_job=dict(metric_calls=100))
    return PolicyState(**{**base, **kw})

def test_policy_fires_only_with_a_reason_data_cooldown_and_budget():
    p = TriggerPolicy(min_new_labels=200, cooldown_s=3600, max_runs=2, max_metric_calls=250)
    d = decide(p, _state())
    assert d.fire and d.key == "p:drift:1:1" and d.alarm_id == 1
    assert not decide(p, _state(open_alarms=[])).fire                                   # no alarm, no schedule
    assert not decide(p, _state(new_labels=199)).fire                                   # not enough new data
    assert not decide(p, _state(last_start=10_000.0 - 60)).fire                         # cooldown
    assert decide(p, _state(last_start=10_000.0 - 4000)).fire
    assert not decide(p, _state(runs_in_period=2)).fire                                 # runs per period
    assert not decide(p, _state(spent=dict(metric_calls=200))).fire                     # 200 + 100 > 250 metric calls
    assert not decide(p, _state(next_job=dict(metric_calls=None))).fire                 # an uncapped job cannot be fitted
    assert not decide(p, _state(in_flight=True)).fire
    assert decide(p, _state(attempts={"drift:1": 1})).key == "p:drift:1:2"              # a retry is a new attempt
    assert not decide(TriggerPolicy(signals=["input"]), _state()).fire                  # a signal the policy does not act on
    assert all(r for r in decide(p, _state(new_labels=5)).reasons)


# ---------------------------------------------------------------- the gate

def test_gate_never_passes_a_candidate_that_does_not_prove_itself():
    rng = random.Random(0)
    prod = [float(rng.random() < 0.6) for _ in range(200)]
    assert not gate_scores(prod, prod).passed                                           # equal
    assert not gate_scores(prod, [0.0 if p and rng.random() < 0.2 else p for p in prod]).passed   # worse
    slightly = list(prod); slightly[prod.index(0.0)] = 1.0
    assert not gate_scores(prod, slightly).passed                                       # better, not significantly
    assert not gate_scores(prod[:10], [1.0] * 10).passed                                # too few held-out examples
    better = [1.0 if p else float(rng.random() < 0.5) for p in prod]
    assert gate_scores(prod, better).passed and not gate_scores(better, prod).passed
    task = load_task("sst2")
    sp = task.splits(n_train=8, n_val=0, n_test=80, seed=0)
    with_demos = task.program(); with_demos.demos = [e.toDict() for e in sp.train]
    assert not gate(task.program(), with_demos, sp.test, task.metric, lm=toy_lm()).passed


# ---------------------------------------------------------------- warm start (scripted LM)

def test_warm_start_resumes_the_ga_population_and_needs_fewer_calls(tmp_cache, tmp_path):
    from dspyopt_nb.engines.scripted import search_sentiment
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    from benchmarks.warm_start import calls_to_reach, trajectory
    task, model = load_task("sst2"), scripted_lm(search_sentiment)
    run = lambda name, sp, **kw: optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer="ga",
                                          preset="light", seed=1, lm=model, run_dir=str(tmp_path / name), tracking=False,
                                          progress=False, **kw)
    first = run("w0", task.splits(n_train=30, n_val=16, n_test=20, seed=0))
    sp = task.splits(n_train=30, n_val=16, n_test=20, seed=1)
    cold, warm = run("cold", sp), run("warm", sp, warm_start=first.run_dir)
    tc, tw = trajectory(cold, "ga", 16), trajectory(warm, "ga", 16)
    target = max(s for _, s in tc)
    assert calls_to_reach(tw, target) is not None and calls_to_reach(tw, target) < calls_to_reach(tc, target)
    assert warm.usage["lm_calls"] < cold.usage["lm_calls"]                               # no instruction proposed again


@pytest.mark.parametrize("optimizer", ["gepa", "mipro"])
def test_warm_start_continues_the_instruction_search(tmp_cache, tmp_path, optimizer):
    "GEPA and MIPROv2 keep their ranked instructions in the run folder; a warm start of the same optimizer continues from "
    "them (and from the program) and reaches the cold start's best with fewer metric calls."
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    from dspyopt_nb.optimizers.builtin import WARM_FILES
    from benchmarks.warm_start import KNOBS, calls_to_reach, instruction_model, trajectory
    task, model = load_task("sst2"), scripted_lm(instruction_model)
    run = lambda name, sp, **kw: optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=optimizer,
                                          knobs=KNOBS[optimizer], seed=1, lm=model, run_dir=str(tmp_path / name), tracking=False,
                                          progress=False, **kw)
    first = run("w0", task.splits(n_train=30, n_val=16, n_test=20, seed=0))
    kept = json.loads((Path(first.run_dir) / WARM_FILES[optimizer]).read_text())["candidates"]
    assert kept and "negative words" in kept[0]["instructions"]["self"], kept[:2]       # the best instruction first
    sp = task.splits(n_train=30, n_val=16, n_test=20, seed=1)
    cold, warm = run("cold", sp), run("warm", sp, warm_start=first.run_dir)
    tc, tw = trajectory(cold, optimizer, 16), trajectory(warm, optimizer, 16)
    target = max(s for _, s in tc)
    assert calls_to_reach(tw, target) is not None and calls_to_reach(tw, target) < calls_to_reach(tc, target), (tc, tw)


@pytest.mark.parametrize("optimizer", ["gepa", "mipro"])
def test_a_search_stopped_by_its_cap_still_leaves_its_candidates(tmp_cache, tmp_path, optimizer):
    "A run whose metric-call cap ends the search inside DSPy's compile keeps what it recorded, best first, for a warm start."
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    from dspyopt_nb.optimizers.builtin import WARM_FILES, warm_candidates
    from dspyopt_nb.optimizers.protocol import OptimizerContext
    from benchmarks.warm_start import KNOBS, instruction_model
    task, sp = load_task("sst2"), load_task("sst2").splits(n_train=30, n_val=16, n_test=20, seed=0)
    res = optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=optimizer, knobs=KNOBS[optimizer],
                   seed=1, lm=scripted_lm(instruction_model), run_dir=str(tmp_path / "capped"), tracking=False, progress=False,
                   max_metric_calls=70)
    assert res.status == "stopped" and "cap" in res.message, (res.status, res.message)
    kept = json.loads((Path(res.run_dir) / WARM_FILES[optimizer]).read_text())
    assert kept["stopped"] and len(kept["candidates"]) >= 2, kept                      # more than the student's own instruction
    scores = [(not c["full"], -c["score"]) for c in kept["candidates"]]
    assert scores == sorted(scores)                                                   # full evaluations first, each best first
    ctx = OptimizerContext(task.program(), [], [], None, None, {}, 0, None, None, warm_start={"run_dir": res.run_dir})
    assert warm_candidates(ctx, optimizer) == kept["candidates"]                      # a warm start reads them


def test_what_a_warm_start_of_the_instruction_searches_proposes():
    "GEPA's first proposals are the earlier front (skipping the parent's own text); MIPROv2's candidates are the student's, "
    "then the earlier ones, with nothing left to propose anew."
    from dspyopt_nb.optimizers.builtin import _replay_proposer, _warm_mipro
    prior = [dict(instructions={"self": "Answer negative on negative words."}, score=0.7), dict(instructions={"self": "Be brief."}, score=0.6)]
    prop = _replay_proposer(prior)
    assert prop({"self": "Answer negative on negative words."}, {}, ["self"]) == {"self": "Be brief."}
    prog = dspy.Predict("review -> sentiment")
    mipro = _warm_mipro(prior)(metric=lambda *a: 1.0, prompt_model=toy_lm(), task_model=toy_lm(), auto=None, num_candidates=3)
    out = mipro._propose_instructions(prog, [], None, 1, True, True, True, True, num_instruct_candidates=3)
    assert out == {0: [prog.signature.instructions, "Answer negative on negative words.", "Be brief."]}


# ---------------------------------------------------------------- the learner, end to end, on both databases

@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite": return f"sqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("postgres_url")

class World:
    "The runtime played in memory: production answers through the scripted toy model, feedback is each review's label."
    def __init__(self, store, tmp_path, production_demos: int, **cfg):
        self.task, self.toy = load_task("sst2"), toy_lm()
        self.pos = [e for e in self.task.examples() if e.sentiment == "positive"]
        self.neg = [e for e in self.task.examples() if e.sentiment == "negative"]
        self.name = f"sst2-{uuid.uuid4().hex[:6]}"      # programs are unique: the PostgreSQL store is shared by the session
        self.registry = MemoryRegistry({self.name: self.task.program})
        prod = self.task.program(); prod.demos = [e.toDict() for e in self.task.examples()[:production_demos]]
        self.registry.set_production(self.name, self.registry.register(self.name, prod.dump_state(), key="initial"))
        self.gateway, self.source, self.rng, self.clock = MemoryGateway(self.registry), MemoryTraceSource(), random.Random(0), 0.0
        self.config = dict(program=self.name, store=store, tracking=False, work_dir=str(tmp_path / "learn"),
                           window_params=dict(reference_size=200, window=100, every=25),
                           policy=dict(min_new_labels=200, cooldown_s=3600, retry_after_s=0, max_runs=3, max_metric_calls=3000),
                           job=dict(optimizer="bootstrap", preset="light", lm="scripted:dspyopt_nb.engines.scripted:toy_sentiment",
                                    max_metric_calls=1500, tracking=False),
                           max_examples=300, min_holdout=60, **cfg)
        self.learner = self.new_learner()

    def new_learner(self, **kw):
        return Learner(self.config, source=self.source, registry=self.registry, gateway=self.gateway,
                       launcher=kw.pop("launcher", DirectLauncher(wait=True)), lm=self.toy, **kw)

    def serve(self, n, p_negative, noise=0.0):
        prog = self.registry.load(self.name, self.registry.production(self.name))
        with dspy.context(lm=self.toy, adapter=AutoAdapter()):
            for _ in range(n):
                ex = self.rng.choice(self.neg if self.rng.random() < p_negative else self.pos)
                self.clock += 1
                label = ex.sentiment if self.rng.random() >= noise else ("negative" if ex.sentiment == "positive" else "positive")
                t = self.source.serve(self.registry.production(self.name), {"review": ex.review},
                                      {"sentiment": prog(review=ex.review).sentiment}, ts=self.clock)
                self.source.give_feedback(t.request_id, label=label, ts=self.clock)

    def rounds(self, n, p_negative, noise=0.0, learner=None):
        for _ in range(n // 100):
            self.serve(100, p_negative, noise); (learner or self.learner).tick(now=self.clock)

    def triggers(self):
        with session(self.learner.url) as s: return s.query(Trigger).filter(Trigger.program == self.name).order_by(Trigger.id).all()

    def log(self):
        with session(self.learner.url) as s:
            return [(d.kind, d.outcome) for d in s.query(Decision).filter(Decision.program == self.name).order_by(Decision.id)]


def test_learner_discards_a_candidate_that_is_not_better(store, tmp_path):
    "Production already has demos (the toy model's best program); traffic turns negative, the score drops and the alarm "
    "fires, but re-optimizing cannot do better than production: the gate discards the candidate."
    w = World(store, tmp_path, production_demos=8)
    w.rounds(600, p_negative=0.1)
    w.rounds(600, p_negative=0.9)
    trig = w.triggers()
    assert trig and trig[0].reason == "drift", w.log()
    assert trig[0].status == "discarded", (trig[0].status, trig[0].gate, trig[0].error)
    g = json.loads(trig[0].gate)
    assert not g["passed"] and g["n"] >= 60
    assert w.registry.production(w.name) == "1" and trig[0].experiment_id is None     # nothing registered for rollout, nothing promoted
    assert ("gate", "discarded") in w.log()


def test_learner_recovers_from_a_shift_and_survives_a_restart(store, tmp_path):
    "Traffic shifts; the alarm fires, a re-optimization passes the gate and goes to an experiment; a second learner "
    "process waits for the first one's lease, then carries on without doubling the trigger."
    w = World(store, tmp_path, production_demos=0)
    w.rounds(600, p_negative=0.1)
    w.rounds(600, p_negative=0.8)       # alarm ~40 requests in; 200 labels after it; a round each to launch, finish, gate
    trig = w.triggers()
    assert len(trig) == 1 and trig[0].status == "rolling_out", [(t.status, t.gate) for t in trig]
    assert w.registry.production(w.name) == "1"                                          # only the experiment promotes
    other = w.new_learner()                                                                # a restart while the first still holds the lease
    with pytest.raises(LeaseLost): other.tick(now=w.clock)
    w.gateway.decide(trig[0].experiment_id, "promoted")
    other.tick(now=w.clock + other.cfg.lease_s + 1)                                        # the first learner died: its lease ran out
    w.clock += other.cfg.lease_s + 1
    trig = w.triggers()
    assert len(trig) == 1 and trig[0].status == "promoted" and w.registry.production(w.name) == trig[0].candidate_version
    assert [k for k, o in w.log() if k == "trigger"] == ["trigger"]                        # decided once


def test_a_failed_job_ends_clearly_and_the_next_trigger_works(tmp_path):
    "A job that fails leaves the trigger 'failed' with its error, nothing registered; the retry starts and completes."
    class Broken:
        def launch(self, config, job_run, log): raise RuntimeError("the scheduler is down")
    w = World(f"sqlite:///{tmp_path}/store.db", tmp_path, production_demos=0)
    w.config["policy"] = {**w.config["policy"], "retry_after_s": 500}
    w.learner = w.new_learner(launcher=Broken())
    w.rounds(600, p_negative=0.1)
    w.rounds(400, p_negative=0.8)
    (failed,) = w.triggers()
    assert failed.status == "failed" and "the scheduler is down" in failed.error and failed.candidate_version is None
    assert w.registry.production(w.name) == "1"
    w.learner = w.new_learner()                                   # the next learner (after the first one's lease ran out)
    for k in range(3): w.learner.tick(now=w.clock + 1000 + k)      # launch, the job's outcome, the gate
    first, retry = w.triggers()
    assert first.status == "failed" and retry.key.endswith(":2") and retry.status == "rolling_out", (retry.status, retry.error, w.log())
    assert w.registry.production(w.name) == "1"


def test_a_store_outage_costs_a_round_and_loses_or_doubles_nothing(tmp_path, monkeypatch):
    "The store fails while a round commits: the learner keeps running, and the next round counts every request once."
    import signal
    import contextlib
    from sqlalchemy.exc import OperationalError
    import dspyopt_nb.learn.learner as learner_module
    from dspyopt_nb.learn.models import LearnState
    w = World(f"sqlite:///{tmp_path}/store.db", tmp_path, production_demos=0)
    w.serve(100, p_negative=0.1)
    real, calls = learner_module.session, {"n": 0}

    @contextlib.contextmanager
    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4: raise OperationalError("UPDATE learn_state", {}, Exception("server closed the connection"))  # observe's commit
        with real(*a, **kw) as s: yield s
    monkeypatch.setattr(learner_module, "session", flaky)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        w.learner.cfg.poll_s = 0.01
        assert w.learner.run(max_rounds=3) == 0
    finally:
        for s, h in handlers.items(): signal.signal(s, h)
    assert calls["n"] > 4
    with real(w.learner.url) as s: st = s.get(LearnState, w.name)
    assert (st.n_requests, st.n_feedback, st.owner) == (100, 100, None)    # counted once; the lease given back on the way out


def test_demo_refresh_is_a_gated_candidate_in_the_registry(tmp_path):
    "The cheap online step: production's demos refreshed from recent feedback-confirmed traces, registered, gated, rolled out."
    w = World(f"sqlite:///{tmp_path}/store.db", tmp_path, production_demos=0, method="refresh_demos", refresh_k=4)
    w.rounds(600, p_negative=0.1)
    w.rounds(600, p_negative=0.8)
    (t,) = w.triggers()
    assert t.status == "rolling_out" and t.run_dir is None, (t.status, t.gate, t.error)    # no job run: the demo refresh
    cand = w.registry.load(w.name, t.candidate_version)
    demos = cand.predictors()[0].demos
    assert len(demos) == 4 and json.loads(t.gate)["passed"]
    assert w.registry.production(w.name) == "1"


def test_learner_killed_mid_job_the_next_one_takes_the_papermill_job_over(tmp_cache, tmp_path):
    "The production launcher: `dspyopt run` (papermill) in a process of its own. The learner that launched it is gone "
    "(never ticks again); the next one, once the lease has run out, finds the job's record and takes it through the gate."
    import time
    from dspyopt_nb.learn.launch import SubprocessLauncher
    w = World(f"sqlite:///{tmp_path}/store.db", tmp_path, production_demos=0)
    w.learner = w.new_learner(launcher=SubprocessLauncher())
    w.rounds(600, p_negative=0.1)
    w.rounds(300, p_negative=0.8)
    (t,) = w.triggers()
    assert t.status == "running" and t.job_run, (t.status, t.error)
    nxt = w.new_learner(launcher=SubprocessLauncher())      # the first learner died here, its job still running
    deadline, now = time.time() + 300, w.clock + nxt.cfg.lease_s + 1
    while time.time() < deadline and w.triggers()[0].status in ("launched", "running", "gating"):
        nxt.tick(now=now); now += 1; time.sleep(2)
    (t,) = w.triggers()
    assert t.status in ("rolling_out", "discarded"), (t.status, t.error, w.log())
    assert t.run_dir and Path(t.run_dir, "result.json").exists() and t.gate
    assert [k for k, _ in w.log()].count("trigger") == 1                                   # not launched twice


def test_learner_interfaces_on_the_serving_runtime(tmp_path):
    "SqlTraceSource reads the runtime's request and feedback tables; RuntimeGateway starts and reads its experiments."
    from dspyopt_nb.store.db import MODEL_MODULES
    if "dspyopt_nb.serve.models" not in MODEL_MODULES: pytest.skip("the serving runtime (issue-serve) is not merged into this branch")
    from dspyopt_nb.learn.interfaces import RuntimeGateway, SqlTraceSource
    from dspyopt_nb.serve.experiments import decide, get_experiment
    from dspyopt_nb.serve.models import Feedback, Request
    from dspyopt_nb.store.db import migrate, schema_drift
    url = f"sqlite:///{tmp_path}/store.db"
    migrate(url)
    assert schema_drift(url) == []
    with session(url) as s:
        for i in range(5):
            s.add(Request(id=f"r{i}", ts=100.0 + i, program="sst2", version="1", inputs=json.dumps({"review": f"text {i}"}),
                          outputs=json.dumps({"sentiment": "positive"}), latency_ms=1.0))
        s.flush()
        for i in (1, 3): s.add(Feedback(request_id=f"r{i}", ts=200.0 + i, label="negative" if i == 1 else "positive"))
    src = SqlTraceSource(url)
    first, cursor = src.read_requests("sst2", None, 3)
    rest, _ = src.read_requests("sst2", cursor, 10)
    assert [t.request_id for t in first + rest] == [f"r{i}" for i in range(5)]
    fbs, _ = src.read_feedback("sst2", None, 10)
    assert [(t.request_id, t.correct("sentiment")) for t in fbs] == [("r1", 0.0), ("r3", 1.0)]
    g = RuntimeGateway(url, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", stages=[0.1, 0.5])
    eid = g.start_experiment("sst2", "1", "2", name="learn-sst2-drift-1-1", reason="passed the gate")
    assert g.start_experiment("sst2", "1", "2", name=eid, reason="after a restart") == eid
    assert get_experiment(eid, url).versions == {"production": "1", "candidate": "2"}
    assert g.experiment(eid).status == "running"
    decide(eid, "promoted", "significant", url=url, status="promoted", winner="candidate")
    assert g.experiment(eid).status == "running"                  # promoted, still watched by the runtime: may roll back
    decide(eid, "completed", "watched", url=url, status="completed", winner="candidate")
    assert g.experiment(eid).status == "promoted"
