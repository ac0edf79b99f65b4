"The genetic optimizer: operators, selection, convergence, determinism and resume after SIGKILL, with a scripted LM."
import hashlib, json, os, random, signal, subprocess, sys, textwrap, time
from pathlib import Path

import dspy
import pytest

import dspyopt_nb.optimizers.ga.optimizer  # noqa: F401  registers "ga"
from dspyopt_nb.engines.adapter import AutoAdapter
from dspyopt_nb.data import load_task
import threading
from dspyopt_nb.run.events import read_events
from dspyopt_nb.optimizers.ga.optimizer import GA_PRESETS, GenerationFinished, GeneticOptimizer, ga_estimate
from dspyopt_nb.optimizers.ga.ops import (OPERATORS, Gene, Genome, OperatorContext, Proposer, crowded_tournament, demo_add, demo_drop,
                               demo_swap, diversity, feedback_rewrite, llm_instruction_crossover, nsga2_select, pareto_ranks,
                               prefix_mutation, register_operator, roulette, shared_fitness, tournament, uniform_demo_crossover)
from dspyopt_nb.engines.scripted import SEARCH_PROPOSALS, ScriptedEngine, scripted_lm, search_sentiment
from dspyopt_nb.optimize import optimize
from dspyopt_nb.optimizers.protocol import get_optimizer
from dspyopt_nb.run.errors import OptimizeError
from dspyopt_nb.run.plan import RunPlan
from dspyopt_nb.run.result import OptimizationResult

pytestmark = pytest.mark.filterwarnings("ignore::dspyopt_nb.stats.UnderpoweredWarning")  # small test splits, on purpose

TASK = load_task("sst2")
SP = TASK.splits(n_train=30, n_val=20, n_test=40, seed=0)


def ga_model(prompt: str) -> str:
    "The GA lesson's model (`search_sentiment`); with GA_CALL_LOG set, each prompt's hash is logged (a subprocess test counts calls)."
    log = os.environ.get("GA_CALL_LOG")
    if log:
        with open(log, "a") as f: f.write(hashlib.sha256(prompt.encode()).hexdigest()[:16] + "\n")
    return search_sentiment(prompt)


def _ga(tmp_path, name="run", lm=None, **kw):
    kw.setdefault("tracking", False)
    return optimize(TASK.program(), SP.train, TASK.metric, valset=SP.val, testset=SP.test, optimizer="ga", seed=kw.pop("seed", 0),
                    lm=lm or scripted_lm(ga_model), run_dir=str(tmp_path / name), progress=False, **kw)


def _generations(run_dir) -> list:
    return [e for e in read_events(Path(run_dir) / "events.jsonl") if isinstance(e, GenerationFinished)]


# --- registration ---------------------------------------------------------------------------------------------------

def test_registered_like_the_builtins():
    p = get_optimizer("ga")
    assert set(p.presets) == {"light", "medium", "heavy"}
    for k in ("population_size", "generations", "minibatch_size", "elite_count", "patience", "max_demos"):
        assert all(k in b for b in p.presets.values())
    assert set(GA_PRESETS["light"]) == set(GA_PRESETS["heavy"])  # optimize() accepts overrides of preset knobs only
    assert ga_estimate(GA_PRESETS["light"], 50, 50) < ga_estimate(GA_PRESETS["heavy"], 50, 50)


def test_dry_run_estimates_without_lm_calls(tmp_path):
    eng = ScriptedEngine(ga_model)
    p = _ga(tmp_path, lm=dspy.LM("scripted/dry", engine=eng), dry_run=True)
    assert isinstance(p, RunPlan) and p.estimate.metric_calls > 0 and eng.calls == 0


# --- operators --------------------------------------------------------------------------------------------------------

POOLS = {"a": [dict(q=f"q{i}", y="x") for i in range(8)], "b": [dict(q=f"r{i}", y="z") for i in range(3)]}
G1 = Genome((("a", Gene("Answer the question briefly please.", (0, 1))), ("b", Gene("Say yes or no to it.", ()))))
G2 = Genome((("a", Gene("Think and then answer the question.", (2, 3, 4))), ("b", Gene("Reply with one word only.", (1,)))))


def test_demo_mutations_keep_the_genome_valid():
    ctx = OperatorContext(POOLS, Proposer(), random.Random(0), max_demos=3)
    g = G1
    for _ in range(300):
        g = ctx.rng.choice([demo_add, demo_drop, demo_swap])(g, ctx)
        for name in g.names:
            demos = g[name].demos
            assert len(demos) <= 3 and len(set(demos)) == len(demos) and all(0 <= i < len(POOLS[name]) for i in demos)
        assert [n for n in g.names] == ["a", "b"] and g["a"].instruction == G1["a"].instruction


def test_uniform_demo_crossover_draws_from_both_parents():
    ctx = OperatorContext(POOLS, Proposer(), random.Random(1), max_demos=4)
    seen = set()
    for _ in range(200):
        c = uniform_demo_crossover(G1, G2, ctx)
        assert set(c["a"].demos) <= {0, 1, 2, 3, 4} and len(c["a"].demos) <= 4
        assert c["a"].instruction == G1["a"].instruction  # demos only
        seen |= set(c["a"].demos)
    assert seen == {0, 1, 2, 3, 4}


def test_llm_operators_go_through_the_context_lm_and_its_cache(tmp_cache):
    calls = []
    def writer(prompt):
        calls.append(prompt)
        return " Combine both: answer briefly after thinking."
    L = scripted_lm(writer)
    ctx = OperatorContext(POOLS, Proposer(), random.Random(2))
    with dspy.context(lm=L, adapter=AutoAdapter()):
        child = llm_instruction_crossover(G1, G2, ctx)
        assert child["a"].instruction == "Combine both: answer briefly after thinking." and child["a"].demos == G1["a"].demos
        assert len(calls) == 2  # one per predictor whose instructions differ
        assert "First: Answer the question briefly please." in calls[0] and "Second: Think and then answer" in calls[0]
        mistakes = {G1.key: [dict(inputs=dict(q="2+2"), expected=dict(y="4"), got=dict(y="5"), feedback="off by one")]}
        ctx2 = OperatorContext(POOLS, Proposer(), random.Random(3), failures=mistakes)
        rewritten = feedback_rewrite(G1, ctx2)
    assert "q: 2+2 | expected: 4 | got: 5 | feedback: off by one" in calls[-1]
    assert rewritten != G1
    # an LM that writes nothing usable leaves the genome unchanged
    with dspy.context(lm=scripted_lm(lambda p: " ok"), adapter=AutoAdapter()):
        assert llm_instruction_crossover(G1, G2, OperatorContext(POOLS, Proposer(), random.Random(0))) == G1


def test_prefix_mutation_relabels_an_output_field():
    ctx = OperatorContext(POOLS, Proposer(), random.Random(0), prefix_options={"a": {"y": ["Y:", "Answer:"]}, "b": {"y": ["Y:", "Label:"]}})
    g = prefix_mutation(G1, ctx)
    assert g != G1 and any(dict(g[n].prefixes).get("y") in ("Y:", "Answer:", "Label:") for n in g.names)


def test_a_user_operator_plugs_in_by_name(tmp_path, tmp_cache):
    used = []
    @register_operator("keep_first_demo", "mutation")
    def keep_first_demo(g, ctx):
        used.append(g.key)
        name = ctx.rng.choice(g.names)
        return g.replace(name, demos=g[name].demos[:1] if g[name].demos else (0,))
    try:
        res = _ga(tmp_path, mutations=("keep_first_demo", "demo_add"), generations=2)
        assert res.status == "finished" and used
    finally: OPERATORS.pop("keep_first_demo")


# --- selection --------------------------------------------------------------------------------------------------------

def test_selection_pressure_and_determinism():
    fit = [0.1, 0.9, 0.5, 0.3, 0.7]
    t = tournament(fit, 2000, random.Random(0), size=3)
    assert t.count(1) > t.count(4) > t.count(2) > 0 == t.count(3) == t.count(0)  # the two worst never win a 3-of-5 tournament
    r = roulette(fit, 5000, random.Random(0))
    assert r.count(1) > r.count(2) > r.count(0)
    assert tournament(fit, 20, random.Random(7)) == tournament(fit, 20, random.Random(7))


def test_shared_fitness_favours_the_different_genome():
    twin = G1.replace("a", demos=(1, 0))
    sf = shared_fitness([0.8, 0.8, 0.75], [G1, twin, G2], radius=0.3)
    assert sf[2] > sf[0] and diversity([G1, twin]) < diversity([G1, G2])


def test_nsga2_fronts():
    objs = [(0.9, 300), (0.8, 100), (0.7, 120), (0.6, 50), (0.5, 400), (0.9, 300)]
    ranks, crowd = pareto_ranks(objs)
    assert ranks == [0, 0, 1, 0, 2, 0]
    assert set(nsga2_select(objs, 4)) == {0, 1, 3, 5}
    assert all(ranks[i] == 0 for i in crowded_tournament(ranks, crowd, 30, random.Random(0), size=6))


# --- end to end: improvement, convergence, caps -----------------------------------------------------------------------

def test_ga_improves_and_reports_generations(tmp_path, tmp_cache):
    res = _ga(tmp_path)
    assert res.status == "finished" and res.optimized > res.baseline, res.summary()
    gens = _generations(tmp_path / "run")
    assert gens and [e.generation for e in gens] == list(range(len(gens))) and gens[-1].stop_reason
    assert all(e.best >= e.mean and 0 <= e.diversity <= 1 for e in gens)
    assert gens[-1].best_full == max(c.score for c in res.candidates if c.full)
    ck = json.loads((tmp_path / "run" / "ga_checkpoint.json").read_text())
    assert ck["generation"] == gens[-1].generation and ck["population"]
    # every candidate after the baseline has a parent in the run's record
    assert all(c.parent is not None for c in res.candidates[1:])


def test_minibatch_scores_are_cached(tmp_path, tmp_cache):
    res = _ga(tmp_path, generations=3, patience=10)
    ck = json.loads((tmp_path / "run" / "ga_checkpoint.json").read_text())
    scored = sum(len(v) for v in ck["scores"].values())
    bootstrap = min(GA_PRESETS["light"]["bootstrap_examples"], len(SP.train))
    # metric calls = baseline validation + bootstrapping + one per (genome, example) scored + held-out test
    assert res.usage["metric_calls"] == len(SP.val) + bootstrap + scored + 2 * len(SP.test)


def test_patience_stops_a_stalled_run(tmp_path, tmp_cache):
    flat = lambda p: " positive" if p.rsplit("\n\n", 1)[-1].endswith("Sentiment:") else " " + SEARCH_PROPOSALS[len(p) % 4]
    _ga(tmp_path, lm=scripted_lm(flat), patience=2, generations=20)
    gens = _generations(tmp_path / "run")
    assert gens[-1].stop_reason == "patience" and gens[-1].generation == 2


def test_target_score_and_diversity_collapse(tmp_path, tmp_cache):
    _ga(tmp_path, "target", target_score=0.5, generations=20)
    assert _generations(tmp_path / "target")[-1].stop_reason == "target"
    _ga(tmp_path, "collapse", collapse_diversity=1.0)
    assert [e.stop_reason for e in _generations(tmp_path / "collapse")] == ["diversity"]


def test_hard_caps_bind(tmp_path, tmp_cache):
    res = _ga(tmp_path, "calls", max_metric_calls=120)
    assert res.status == "stopped" and "metric-call cap" in res.message
    assert res.usage["metric_calls"] - 2 * len(SP.test) <= 120
    res = _ga(tmp_path, "tokens", max_tokens=20000)
    assert res.status == "stopped" and "token cap" in res.message


def test_multi_objective_keeps_short_prompts(tmp_path, tmp_cache):
    res = _ga(tmp_path, multi_objective=True, generations=3)
    assert res.status == "finished" and res.optimized >= res.baseline
    ck = json.loads((tmp_path / "run" / "ga_checkpoint.json").read_text())
    assert len(ck["population"]) == GA_PRESETS["light"]["population_size"]


def test_bad_knobs_fail_with_the_fix(tmp_path):
    for kw, msg in [(dict(elite_count=0), "elite_count"), (dict(selection="rank"), "selection"),
                    (dict(crossovers=("nope",)), "register_operator"), (dict(population_size=1), "population_size")]:
        with pytest.raises(OptimizeError, match=msg) as ei: _ga(tmp_path, "bad", **kw)
        assert "Fix" in str(ei.value)


# --- determinism and resume -------------------------------------------------------------------------------------------

def test_deterministic_for_a_seed(tmp_path, tmp_cache):
    a, b = _ga(tmp_path, "a"), _ga(tmp_path, "b")
    assert a.program_state == b.program_state and [c.score for c in a.candidates] == [c.score for c in b.candidates]
    assert a.usage["metric_calls"] == b.usage["metric_calls"]


def test_stop_then_resume_continues_from_the_checkpoint(tmp_path, tmp_cache):
    ref = _ga(tmp_path, "ref", patience=10)
    halt = threading.Event()
    stop = lambda e: halt.set() if isinstance(e, GenerationFinished) and e.generation == 2 else None
    first = _ga(tmp_path, stop=halt, callbacks=[stop], patience=10)
    assert first.status == "stopped"
    L = scripted_lm(ga_model); eng = L.engine
    second = _ga(tmp_path, lm=L, patience=10)
    assert second.status == "finished" and second.program_state == ref.program_state
    assert [c.score for c in second.candidates] == [c.score for c in ref.candidates]
    assert second.usage["metric_calls"] == ref.usage["metric_calls"]  # the counters continue, so caps bind alike
    assert eng.calls == 0  # everything after generation 2 was asked before the stop, or is cached


JOB = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_ga import ga_model, TASK, SP
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    import dspyopt_nb.optimizers.ga.optimizer
    res = optimize(TASK.program(), SP.train, TASK.metric, valset=SP.val, testset=SP.test, optimizer="ga", lm=scripted_lm(ga_model),
                   seed=0, run_dir=sys.argv[1], tracking=False, progress=False, patience=10, generations=4)
    print(res.status, res.optimized)
""")


def _job(tmp_path, run_dir, cache, log, kill_at_generation=None, timeout=300):
    script = tmp_path / "ga_job.py"
    script.write_text(JOB.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "DSPY_CACHEDIR": str(cache), "GA_CALL_LOG": str(log), "DSPYOPT_NO_PROGRESS": "1"}
    p = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_at_generation is None:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out[-3000:]
        return
    ckpt, deadline = Path(run_dir) / "ga_checkpoint.json", time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        try:
            if json.loads(ckpt.read_text())["generation"] >= kill_at_generation:
                p.send_signal(signal.SIGKILL); p.wait(); return
        except (FileNotFoundError, json.JSONDecodeError, KeyError): pass
        time.sleep(0.01)
    p.kill(); pytest.fail(f"the run ended before generation {kill_at_generation}: {p.stdout.read()[-2000:]}")


def _lines(p): return p.read_text().splitlines() if p.exists() else []


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    _job(tmp_path, tmp_path / "ref", tmp_path / "cache-ref", tmp_path / "ref.log")
    ref = OptimizationResult.load(tmp_path / "ref" / "result.json")
    _job(tmp_path, tmp_path / "run", tmp_path / "cache", tmp_path / "first.log", kill_at_generation=2)
    assert not (tmp_path / "run" / "result.json").exists()
    done = json.loads((tmp_path / "run" / "ga_checkpoint.json").read_text())["generation"]
    _job(tmp_path, tmp_path / "run", tmp_path / "cache", tmp_path / "second.log")
    res = OptimizationResult.load(tmp_path / "run" / "result.json")
    first, second = _lines(tmp_path / "first.log"), _lines(tmp_path / "second.log")
    # no completed call is made again: together the two starts make the uninterrupted run's calls, plus at most the
    # one in flight at the kill (the log hashes prompts only, so calls that differ by seed alone cannot be told apart)
    assert len(first) + len(second) <= len(_lines(tmp_path / "ref.log")) + 1, "completed LM calls were made again after the restart"
    assert res.program_state == ref.program_state and res.optimized_scores == ref.optimized_scores
    assert [c.score for c in res.candidates] == [c.score for c in ref.candidates]
    gens = [e for e in read_events(tmp_path / "run" / "events.jsonl") if isinstance(e, GenerationFinished)]
    assert done >= 2 and gens[-1].stop_reason


# --- the embedded model, for real -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_embedded_model_ga(tmp_path):
    sp = TASK.splits(n_train=30, n_val=16, n_test=60, seed=1)
    res = optimize(TASK.program(), sp.train, TASK.metric, valset=sp.val, testset=sp.test, optimizer="ga", lm="local",
                   population_size=4, generations=2, minibatch_size=6, bootstrap_examples=8, n_proposals=2, elite_count=1,
                   run_dir=str(tmp_path / "real"), tracking=False, progress=False)
    assert res.status == "finished" and res.usage["input_tokens"] > 1000
    assert len(res.candidates) >= 4 and res.errors == []
    gens = [e for e in read_events(tmp_path / "real" / "events.jsonl") if isinstance(e, GenerationFinished)]
    assert gens and gens[-1].stop_reason
    best = res.load_program(TASK.program())
    assert best.signature.instructions.strip()
    assert res.optimized >= res.baseline - 0.1, res.summary()  # a tiny budget: no claim of improvement, only no collapse


def test_a_dspy_teleprompter_on_its_own(tmp_cache):
    "Issue 10.4: GeneticOptimizer(metric=...).compile(student, trainset=..., valset=...) works as DSPy users expect."
    from dspyopt_nb.engines.adapter import CompletionAdapter
    with dspy.context(lm=scripted_lm(ga_model), adapter=CompletionAdapter()):
        best = GeneticOptimizer(metric=TASK.metric, population_size=4, generations=2, minibatch_size=8).compile(
            TASK.program(), trainset=SP.train, valset=SP.val)
        ev = dspy.Evaluate(devset=SP.test, metric=TASK.metric, display_progress=False)
        assert ev(best).score > ev(TASK.program()).score
    assert len(best.candidates) >= 4 and isinstance(best, dspy.Predict)
    with pytest.raises(OptimizeError, match="needs a metric"): GeneticOptimizer().compile(TASK.program(), trainset=SP.train)


def test_random_search_ablation_runs_at_the_same_budget(tmp_path, tmp_cache):
    "evolve=False: the GA's own generation 0 drawn afresh each generation (the ablation of benchmarks/ga_ablation.py)."
    evo, rnd = _ga(tmp_path, "evo", max_metric_calls=200, patience=10), _ga(tmp_path, "rnd", max_metric_calls=200, patience=10, evolve=False)
    for r in (evo, rnd): assert r.usage["metric_calls"] - 2 * len(SP.test) <= 200 + 4
    assert rnd.status in ("finished", "stopped") and len(rnd.candidates) > 4
