"analytics: validation verdicts logged to MLflow, run history, trends and regressions, gain patterns, ROI, charts."
import math, re, uuid

import numpy as np
import pytest
from scipy import stats as sps

from dspyopt_nb.insights.analytics import (DEFAULT_CPU_HOUR_USD, gain_patterns, model_prices, relative_lift_ci, roi,
                                           roi_table, run_cost, run_history, validate_improvement)
from dspyopt_nb.insights.trends import (ScoreTrend, forecast_scores, forest_chart, log_chart, score_trend, trend_chart,
                                        trial_chart)
from dspyopt_nb.run.events import CandidateEvaluated
from dspyopt_nb.run.result import Candidate, OptimizationResult
from dspyopt_nb.stats import compare_paired
from dspyopt_nb.tracking.mlflow_tracker import MlflowTracker


def scores(n, k, seed=0):
    "n binary scores with exactly k ones, in a seeded order."
    x = np.zeros(n); x[:k] = 1
    return np.random.default_rng(seed).permutation(x).tolist()

def paired(n, k_base, k_opt, seed=0):
    "Baseline with k_base ones; optimized keeps the baseline's ones and gains (or loses) the difference."
    a = np.array(scores(n, k_base, seed)); b = a.copy()
    zeros, ones = np.flatnonzero(a == 0), np.flatnonzero(a == 1)
    if k_opt >= k_base: b[zeros[: k_opt - k_base]] = 1
    else: b[ones[: k_base - k_opt]] = 0
    return a.tolist(), b.tolist()

def log_run(uri, experiment, base, opt, *, optimizer="bootstrap", preset="light", test="t1", lm="scripted/scripted",
            knobs=None, usage=None, tags=None):
    "Log a run the way optimize() does (same tracker, params and artifacts), with given per-example scores."
    tr = MlflowTracker(uri, experiment)
    knobs = knobs if knobs is not None else {"max_bootstrapped_demos": 4}
    tr.start(optimizer, dict(optimizer=optimizer, preset=preset, seed=0, lm=lm, **{f"knob.{k}": v for k, v in knobs.items()},
                             **{"data.test": test, "data.n_test": len(base)}), tags=tags)
    tr(CandidateEvaluated(trial=1, candidate=0, score=0.5, n=10, full=True, accepted=True))
    res = OptimizationResult(run_id=uuid.uuid4().hex[:12], optimizer=optimizer, preset=preset, seed=0, lm=lm,
                             baseline_scores=list(base), optimized_scores=list(opt),
                             comparison=compare_paired(base, opt, n_resamples=999).to_dict(),
                             candidates=[Candidate(0, 0.5, 10, True, 1), Candidate(1, 0.6, 5, False, 2, 0),
                                         Candidate(2, 0.7, 10, True, 3, 0)],
                             usage=usage or dict(lm_calls=100, metric_calls=100, input_tokens=9000, output_tokens=1000,
                                                 cost=0.0, wall_s=36.0),
                             data=dict(test=test, n_test=len(base)))
    return tr.finish(res)

@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    "One store for the module (creating and migrating a SQLite store takes seconds); each test has its own experiment."
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"

@pytest.fixture
def exp(): return f"task-{uuid.uuid4().hex[:8]}"

def client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(uri)


# -- validation

def test_single_run_passes_target_and_logs_verdict(uri, exp):
    r = log_run(uri, exp, *paired(100, 25, 45))
    v = validate_improvement(r.mlflow_run_id, tracking_uri=uri, log=True, n_resamples=2000)
    assert v.passed and v.verdict == "pass"
    assert v.relative_lift == pytest.approx(0.8) and v.p_value < 0.05 and v.relative_ci[0] < 0.8 < v.relative_ci[1]
    run = client(uri).get_run(r.mlflow_run_id)
    assert run.data.tags["dspyopt.validation"] == "pass"
    assert run.data.metrics["validation.relative_lift"] == pytest.approx(0.8)
    assert run.data.metrics["validation.passed"] == 1.0
    assert "validation/report.md" in {a.path for a in client(uri).list_artifacts(r.mlflow_run_id, "validation")}
    found = client(uri).search_runs([run.info.experiment_id], "tags.`dspyopt.validation` = 'pass'")
    assert [x.info.run_id for x in found] == [r.mlflow_run_id]

def test_significant_but_below_target_fails():
    a, b = paired(400, 200, 230)  # +15% relative, significant on 400 examples
    r = OptimizationResult("x", "mipro", "light", 0, "m", baseline_scores=a, optimized_scores=b)
    v = validate_improvement(r, n_resamples=2000)
    assert v.p_value < 0.05 and not v.passed
    assert any("below the target of 20%" in x for x in v.reasons)
    assert validate_improvement(r, target=0.10, n_resamples=2000).passed

def test_large_but_not_significant_fails_and_strict_is_harder():
    a, b = paired(20, 5, 7)  # +40% relative on 20 examples: not significant
    v = validate_improvement(OptimizationResult("x", "m", "l", 0, "m", baseline_scores=a, optimized_scores=b), n_resamples=2000)
    assert not v.passed and any("not significant" in x for x in v.reasons)
    a, b = paired(100, 25, 45)
    r = OptimizationResult("x", "m", "l", 0, "m", baseline_scores=a, optimized_scores=b)
    loose, strict = validate_improvement(r, n_resamples=2000), validate_improvement(r, strict=True, n_resamples=2000)
    assert loose.passed and strict.passed == (strict.relative_ci[0] >= 0.2)
    assert validate_improvement(r, target=0.7, n_resamples=2000).passed  # the estimate, +80%, clears 70%
    assert not validate_improvement(r, strict=True, target=0.7, n_resamples=2000).passed  # its CI's low end does not

def test_worse_candidate_fails():
    a, b = paired(100, 50, 40)
    v = validate_improvement(OptimizationResult("x", "m", "l", 0, "m", baseline_scores=a, optimized_scores=b), n_resamples=999)
    assert not v.passed and "not better" in v.reasons[0]

def test_zero_baseline_has_no_relative_interval_but_can_pass():
    a, b = [0.0] * 40, scores(40, 20)
    v = validate_improvement(OptimizationResult("x", "m", "l", 0, "m", baseline_scores=a, optimized_scores=b), n_resamples=999)
    assert v.passed and all(map(math.isnan, v.relative_ci))
    assert "validation.relative_ci_low" not in v.metrics()  # non-finite values are not logged

def test_pair_of_runs_compares_optimized_scores_and_logs_against(uri, exp):
    a = log_run(uri, exp, *paired(100, 25, 30))
    base = a.baseline_scores
    b = log_run(uri, exp, base, paired(100, 25, 50)[1], optimizer="mipro")
    v = validate_improvement(a.mlflow_run_id, b.mlflow_run_id, tracking_uri=uri, log=True, n_resamples=999)
    assert v.mean_a == pytest.approx(0.30) and v.mean_b == pytest.approx(0.50)
    assert v.against_run_id == a.mlflow_run_id and v.run_id == b.mlflow_run_id
    tags = client(uri).get_run(b.mlflow_run_id).data.tags
    assert tags["dspyopt.validation_vs_run"] == v.verdict
    assert tags["dspyopt.validation_vs_run.against"] == a.mlflow_run_id
    arts = {x.path for x in client(uri).list_artifacts(b.mlflow_run_id, "validation")}
    assert f"validation/vs-{a.mlflow_run_id}.md" in arts

def test_pair_on_different_test_data_is_a_clear_error(uri, exp):
    a = log_run(uri, exp, *paired(50, 10, 20), test="aaa")
    b = log_run(uri, exp, *paired(50, 10, 25), test="bbb")
    with pytest.raises(ValueError, match=r"same test examples.*Fix:"):
        validate_improvement(a.mlflow_run_id, b.mlflow_run_id, tracking_uri=uri)

def test_bad_inputs_name_the_fix(uri):
    with pytest.raises(TypeError, match="Fix:"): validate_improvement(3.5)
    with pytest.raises(FileNotFoundError, match="Fix:"): validate_improvement("0" * 32, tracking_uri=uri)
    with pytest.raises(ValueError, match="Fix:"):
        validate_improvement(OptimizationResult("x", "m", "l", 0, "m", status="failed"))
    with pytest.raises(ValueError, match="run_id="):
        validate_improvement(OptimizationResult("x", "m", "l", 0, "m", baseline_scores=[0, 1], optimized_scores=[1, 1]),
                             log=True, n_resamples=99)

def test_relative_lift_ci_matches_the_point_estimate():
    a, b = paired(200, 80, 110)
    lo, hi = relative_lift_ci(a, b, n_resamples=2000)
    assert lo < 110 / 80 - 1 < hi
    with pytest.raises(ValueError, match="same examples"): relative_lift_ci([1, 0], [1])


# -- history

def test_run_history_reads_parent_runs_with_settings(uri, exp):
    other = exp + "-misc"
    log_run(uri, exp, *paired(60, 20, 30), knobs={"max_bootstrapped_demos": 4, "max_labeled_demos": 8})
    log_run(uri, exp, *paired(60, 20, 25), optimizer="mipro", knobs={"num_trials": 10})
    log_run(uri, other, *paired(60, 20, 40), test="t2", tags={"dspyopt.task": exp + "-sst2"})
    h = run_history(uri, experiments=[exp, other])
    assert len(h) == 3  # the candidates' child runs are not optimizations
    assert list(h["task"]) == [exp, exp, exp + "-sst2"] and list(h["experiment"]) == [exp, exp, other]
    assert h.loc[0, "settings"] == "max_bootstrapped_demos=4, max_labeled_demos=8"
    assert h.loc[0, "knob.max_bootstrapped_demos"] == 4 and math.isnan(h.loc[1, "knob.max_bootstrapped_demos"])
    assert h.loc[1, "diff"] == pytest.approx(5 / 60) and h.loc[2, "relative_lift"] == pytest.approx(1.0)
    assert h["start_time"].is_monotonic_increasing
    assert len(run_history(uri, task=exp + "-sst2")) == 1 and len(run_history(uri, experiments=[exp])) == 2
    assert len(run_history(uri, experiments=[exp, other], test_hash="t2")) == 1
    with pytest.raises(ValueError, match="Fix: use one of"): run_history(uri, experiments=["nope"])

def test_run_history_of_an_empty_experiment_is_empty(uri, exp):
    client(uri).create_experiment(exp)
    h = run_history(uri, experiments=[exp])
    assert h.empty and "optimized_test" in h.columns
    with pytest.raises(ValueError, match="Fix:"): score_trend(h, tracking_uri=uri)
    with pytest.raises(ValueError, match="Fix:"): gain_patterns(h)


# -- trends

def test_forecast_scores_intervals_and_models():
    fc, model = forecast_scores([0.40, 0.45, 0.43, 0.47, 0.46], horizon=3)
    assert model == "local level" and list(fc["step"]) == [6, 7, 8]
    assert (fc["lower"] < fc["mean"]).all() and (fc["mean"] < fc["upper"]).all()
    assert forecast_scores(np.linspace(0.3, 0.6, 12) + 0.01 * np.sin(np.arange(12)))[1] == "local linear trend"
    flat, _ = forecast_scores([0.5] * 5, 1, noise_floor=0.05)  # a constant series still gets the sampling-error band
    assert flat.loc[0, "lower"] == pytest.approx(0.5 - 1.959964 * 0.05, abs=1e-4)
    with pytest.raises(ValueError, match="at least 3"): forecast_scores([0.5, 0.6])
    with pytest.raises(ValueError, match="model="): forecast_scores([0.5, 0.6, 0.7], model="prophet")

def _series(uri, experiment, ks, n=200):
    base = scores(n, 60)
    return [log_run(uri, experiment, base, paired(n, 60, k)[1]) for k in ks]

def test_trend_flags_a_regression_and_logs_it(uri, exp):
    runs = _series(uri, exp, [100, 104, 102, 106, 70])
    t = score_trend(tracking_uri=uri, task=exp, log=True)
    assert isinstance(t, ScoreTrend) and t.regression and t.latest_run_id == runs[-1].mlflow_run_id
    assert t.latest_interval[0] > 0.35 and t.vs_best["best_run_id"] == runs[3].mlflow_run_id
    assert t.vs_best["diff"] == pytest.approx(-36 / 200) and t.vs_best["p_value"] < 0.05
    run = client(uri).get_run(runs[-1].mlflow_run_id).data
    assert run.tags["dspyopt.regression"] == "yes" and run.metrics["trend.regression"] == 1.0
    assert "trend.next_forecast" in run.metrics and "REGRESSION" in t._repr_markdown_()

def test_trend_without_regression(uri, exp):
    _series(uri, exp, [100, 104, 102, 106, 105])
    t = score_trend(run_history(uri, experiments=[exp]), tracking_uri=uri)
    assert not t.regression and len(t.forecast) == 3
    assert t.latest_interval[0] <= 105 / 200 <= t.latest_interval[1]

def test_trend_with_three_runs_forecasts_but_skips_the_interval_check(uri, exp):
    _series(uri, exp, [100, 104, 102])
    t = score_trend(run_history(uri, experiments=[exp]), tracking_uri=uri, compare_best=False, horizon=2)
    assert t.latest_interval is None and t.vs_best is None and not t.regression and len(t.forecast) == 2
    assert any("at least 4" in r for r in t.reasons)

def test_trend_refuses_mixed_test_sets(uri, exp):
    log_run(uri, exp, *paired(50, 10, 20), test="aaa")
    log_run(uri, exp, *paired(50, 10, 20), test="bbb")
    with pytest.raises(ValueError, match="test_hash="): score_trend(tracking_uri=uri, task=exp)
    with pytest.raises(ValueError, match="at least 3"): score_trend(tracking_uri=uri, task=exp, test_hash="aaa")


# -- patterns

def test_gain_patterns_rank_groups_with_ci_and_adjusted_p(uri, exp):
    for k in (30, 34, 32): log_run(uri, exp, *paired(100, 20, k), optimizer="mipro")
    for k in (25, 23): log_run(uri, exp, *paired(100, 20, k), optimizer="bootstrap")
    log_run(uri, exp + "-sst2", *paired(100, 50, 49), optimizer="bootstrap", test="t2")
    hist = run_history(uri, experiments=[exp, exp + "-sst2"])
    p = gain_patterns(hist)
    ag = p[p.task == exp].set_index("optimizer")
    assert list(ag.index) == ["mipro", "bootstrap"] and list(ag["rank"]) == [1, 2]
    gains = np.array([0.10, 0.14, 0.12])
    t = sps.ttest_1samp(gains, 0.0)
    assert ag.loc["mipro", "mean_gain"] == pytest.approx(gains.mean())
    assert (ag.loc["mipro", "ci_low"], ag.loc["mipro", "ci_high"]) == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert ag.loc["mipro", "p_adjusted"] >= ag.loc["mipro", "p_value"]  # Holm over the two agnews groups
    assert ag.loc["mipro", "significant_runs"] == 3 and ag.loc["mipro", "runs"] == 3
    assert ag.loc["mipro", "gain_per_1k_tokens"] == pytest.approx(gains.mean() / 10)
    sst = p[p.task == exp + "-sst2"].iloc[0]
    assert sst["runs"] == 1 and math.isnan(sst["ci_low"]) and math.isnan(sst["p_adjusted"])
    by_knob = gain_patterns(hist, by=["optimizer", "knob.max_bootstrapped_demos"])
    assert set(by_knob["knob.max_bootstrapped_demos"]) == {4}
    with pytest.raises(ValueError, match="Fix: group by"): gain_patterns(hist, by="nope")


# -- ROI

def test_local_models_are_priced_by_compute_time(uri, exp):
    r = log_run(uri, exp, *paired(100, 25, 45))
    x = roi(r.mlflow_run_id, tracking_uri=uri, cpu_cores=4, requests_per_day=1000, value_per_correct=0.01)
    cost = 36.0 * 4 * DEFAULT_CPU_HOUR_USD / 3600
    assert x.basis == "compute" and x.cost_usd == pytest.approx(cost)
    assert x.gain == pytest.approx(0.2) and x.gain_per_1k_tokens == pytest.approx(0.2 / 10)
    assert x.gain_per_usd == pytest.approx(0.2 / cost)
    assert x.daily_value_usd == pytest.approx(1000 * 0.2 * 0.01)
    assert x.payback_days == pytest.approx(cost / 2.0)
    assert x.payback_days_worst >= x.payback_days
    assert "payback in" in x._repr_markdown_()

def test_api_models_are_priced_per_token_from_litellm_or_a_table(uri, exp):
    r = log_run(uri, exp, *paired(100, 25, 45))
    table = roi(r, priced_as="my/model", prices={"my/model": (1.0, 4.0)})
    assert table.cost_usd == pytest.approx((9000 * 1.0 + 1000 * 4.0) / 1e6) and table.basis == "tokens"
    p = model_prices("openai/gpt-4o-mini")
    assert p["source"] == "litellm" and p["input_per_1m"] > 0 and p["output_per_1m"] > 0
    c = run_cost(r, priced_as="openai/gpt-4o-mini")
    assert c["usd"] == pytest.approx((9000 * p["input_per_1m"] + 1000 * p["output_per_1m"]) / 1e6)
    with pytest.raises(ValueError, match="prices="): model_prices("nobody/no-such-model-xyz")

def test_payback_never_when_serving_costs_eat_the_gain(uri, exp):
    r = log_run(uri, exp, *paired(100, 25, 45))
    x = roi(r, requests_per_day=100, value_per_correct=0.01, extra_cost_per_request=0.01)
    assert x.payback_days == math.inf and "never" in x._repr_markdown_()
    with pytest.raises(ValueError, match="value_per_correct"): roi(r, requests_per_day=100)
    worse = log_run(uri, exp, *paired(100, 50, 40))
    assert any("not a significant improvement" in n for n in roi(worse).notes)
    t = roi_table(run_history(uri, experiments=[exp]), tracking_uri=uri, prices={"scripted/scripted": {"basis": "compute", "cpu_hour_usd": 1.0}},
                  cpu_cores=1)
    assert list(t["cost_usd"]) == pytest.approx([0.01, 0.01])


# -- charts

def test_charts_are_saved_to_mlflow_as_html_and_png(uri, exp, tmp_path):
    runs = _series(uri, exp, [100, 104, 102, 106])
    t = score_trend(tracking_uri=uri, task=exp)
    v = validate_improvement(runs[0], n_resamples=999)
    rid = runs[-1].mlflow_run_id
    charts = {"trials": trial_chart(rid, tracking_uri=uri), "trend": trend_chart(t),
              "forest": forest_chart({"a": v, "b": compare_paired(*paired(100, 30, 35), n_resamples=999)}, target=0.1)}
    for name, ch in charts.items(): ch.to_dict()  # valid Vega-Lite
    saved = log_chart(charts["forest"], "forest", rid, uri) + log_chart(charts["trend"], "trend", rid, uri, formats=("png",))
    assert saved == ["charts/forest.html", "charts/forest.png", "charts/trend.png"]
    html = client(uri).download_artifacts(rid, "charts/forest.html", str(tmp_path))
    text = open(html).read()
    assert "cdn.jsdelivr" not in text and "vega" in text  # self-contained: opens without a network
    png = client(uri).download_artifacts(rid, "charts/trend.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="format"): log_chart(charts["trend"], "x", rid, uri, formats=("svgz",))


# -- end to end on real optimize() runs (scripted model, bundled task)

ANSWER_PREFIXES = ("Sentiment:", "Topic:")
def _words(text): return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 2}

def overlap_model(prompt: str) -> str:
    "The lesson's scripted base model: labels the query like the demos it shares most words with."
    *blocks, query = prompt.split("\n\n")
    prefix = next((p for p in ANSWER_PREFIXES if query.endswith(p)), None)
    if prefix is None: return " Classify the text."
    q, votes = _words(query.rsplit("\n", 1)[0]), {}
    for b in blocks:
        *inputs, answer = b.split("\n")
        if answer.startswith(prefix):
            votes.setdefault(answer[len(prefix):].strip(), []).append(len(q & _words(" ".join(inputs))))
    if len(votes) < 2: return " positive" if prefix == "Sentiment:" else " world"
    return " " + max(votes, key=lambda label: sum(votes[label]) / len(votes[label]))

def test_end_to_end_on_real_runs(uri, exp, tmp_path, tmp_cache):
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.optimize import optimize
    task = load_task("agnews"); sp = task.splits(n_train=20, n_val=12, n_test=60, seed=0)
    runs = [optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer=o, lm=scripted_lm(overlap_model),
                     run_dir=tmp_path / o, tracking=uri, experiment=exp, progress=False, **k)
            for o, k in [("none", {}), ("bootstrap", dict(num_candidate_programs=2))]]
    v = validate_improvement(runs[1].mlflow_run_id, tracking_uri=uri, log=True, n_resamples=2000)
    assert v.diff == pytest.approx(runs[1].optimized - runs[1].baseline)
    assert client(uri).get_run(runs[1].mlflow_run_id).data.tags["dspyopt.validation"] == v.verdict
    pair = validate_improvement(runs[0].mlflow_run_id, runs[1].mlflow_run_id, tracking_uri=uri, n_resamples=999)
    assert pair.mean_a == pytest.approx(runs[0].optimized) and pair.mean_b == pytest.approx(runs[1].optimized)
    h = run_history(uri, task=exp)
    assert list(h["optimizer"]) == ["none", "bootstrap"] and h["total_tokens"].gt(0).all()
    p = gain_patterns(h)
    assert p.iloc[0]["mean_gain"] == pytest.approx(max(h["diff"]))
    x = roi(runs[1], requests_per_day=1000, value_per_correct=0.01)
    assert x.tokens == runs[1].usage["input_tokens"] + runs[1].usage["output_tokens"] and x.cost_usd > 0
    assert trial_chart(runs[1]).to_dict()["layer"]
