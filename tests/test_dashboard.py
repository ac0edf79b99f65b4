"The dashboard's state model, driven headless by event streams (synthetic, and recorded from a real run), and its views."
import io, threading, time

import pytest

from dspyopt_nb.notebook.dashboard import (CandidateTable, ConsoleDashboard, Dashboard, DashboardState, chart_bundle,
                                  device_text, fix_for, make_dashboard, score_chart, state_html, total_calls)
from dspyopt_nb.run.catalogue import RunTable
from dspyopt_nb.data import load_task
from dspyopt_nb.run.events import (BudgetUsed, CandidateEvaluated, ErrorRecorded, EvalProgress, EventStream, NewBest,
                               RunFinished, RunStarted, TrialFinished, TrialStarted, read_events)
from dspyopt_nb.engines.scripted import scripted_lm
from dspyopt_nb.optimize import optimize
from toy import toy_model


def _events(n_trials=5, t0=100.0, finish="finished"):
    "A synthetic run: a baseline, n_trials candidates (one minibatch each, every other one full), budget, the end."
    ev = [RunStarted(run_id="r1", optimizer="mipro", preset="light", n_train=30, n_val=20, n_test=60, estimate=dict(metric_calls=280))]
    calls, best = 0, None
    for t in range(1, n_trials + 1):
        full = t % 2 == 1
        score = 0.4 + 0.05 * t
        accepted = full and (best is None or score > best)
        best = score if accepted else best
        calls += 20
        ev += [TrialStarted(trial=t), CandidateEvaluated(trial=t, candidate=t - 1, score=score, n=20 if full else 5, full=full,
                                                         accepted=accepted, parent=0 if t > 1 else None),
               TrialFinished(trial=t, score=score, best=best if best is not None else float("-inf")),
               BudgetUsed(metric_calls=calls, lm_calls=calls, tokens=100 * calls, cost=0.001 * calls)]
        if accepted: ev.append(NewBest(score=score, candidate=t - 1))
    ev += [EvalProgress(phase="held-out test", total=120), RunFinished(status=finish, baseline=0.5, optimized=0.6, p_value=0.03,
                                                                      message="" if finish == "finished" else "stopped on request")]
    for i, e in enumerate(ev): e.t = t0 + i
    return ev


def test_state_follows_events():
    st = DashboardState()
    seen = []
    for e in _events():
        st.apply(e)
        seen.append(st.progress)
    assert st.status == "finished" and st.trial == 5 and len(st.candidates) == 5
    assert st.best == pytest.approx(0.65) and st.best_candidate == 4         # the best full evaluation, not a minibatch
    assert [t["best"] for t in st.trials][:2] == [pytest.approx(0.45), pytest.approx(0.45)]
    assert seen == sorted(seen) and seen[-1] == 1.0 and max(seen[:-1]) < 1.0  # monotone; 100% only at the end
    assert st.metric_calls == 100 and st.tokens == 10_000 and st.cost == pytest.approx(0.1)
    assert st.elapsed() == pytest.approx(len(_events()) - 1)                 # event time, not wall time
    assert st.optimized == 0.6 and "0.500 -> optimized 0.600" in st.summary()


def test_trial_best_minus_infinity_is_not_plotted():
    st = DashboardState()
    st.apply(RunStarted(optimizer="mipro", preset="light", n_val=20))
    st.apply(TrialFinished(trial=1, score=0.3, best=float("-inf")))
    assert st.trials[0]["best"] is None
    assert score_chart(st).to_dict()  # renders with no best line yet


def test_progress_total_and_eta():
    # the total is the plan's estimate, carried by RunStarted; with a cap, the search part is capped
    assert total_calls(RunStarted(n_test=60, estimate=dict(metric_calls=390))) == 390
    assert total_calls(RunStarted(n_test=60, estimate=dict(metric_calls=390), max_metric_calls=100)) == 100 + 120
    st = DashboardState()
    st.apply(RunStarted(optimizer="mipro", preset="light", n_train=30, n_val=20, n_test=60, max_metric_calls=100, t=0.0,
                        estimate=dict(metric_calls=390)))
    assert st.total_calls == 220 and st.eta(now=10) is None                  # no pace yet
    st.apply(BudgetUsed(metric_calls=110, t=5.0))
    assert st.progress == pytest.approx(0.5) and st.eta(now=10.0) == pytest.approx(10.0)
    st.apply(BudgetUsed(metric_calls=1000, t=6.0))                           # estimates are estimates
    assert st.progress == 0.99


def test_errors_are_deduplicated_and_carry_a_fix():
    st = DashboardState()
    for i in range(5): st.apply(ErrorRecorded(where="lm", message="APIConnectionError: Connection refused", count=i + 1))
    st.apply(ErrorRecorded(where="metric", message="KeyError: 'label'", count=6))
    st.apply(RunFinished(status="failed", message="OptimizeError: trainset is empty. Fix: pass a list of dspy.Example"))
    assert st.n_errors == 6 and [e["times"] for e in st.errors] == [5, 1, 1]
    assert "server" in st.errors[0]["fix"] and "metric" in st.errors[1]["fix"]
    assert st.errors[2] == dict(where="run", problem="OptimizeError: trainset is empty", fix="pass a list of dspy.Example", times=1)
    html = state_html(st)
    assert html.count("Fix:") == 3 and "(×5)" in html


@pytest.mark.parametrize("where,message,words", [
    ("lm", "ContextLengthError: prompt too long", "n_ctx"), ("lm", "AuthenticationError: 401 no api key", "API key"),
    ("lm", "RateLimitError: 429", "rate"), ("run", "RuntimeError: 12 errors, more than max_errors=10", "max-errors"),
    ("lm", "weird", "%dspyopt lm")])
def test_fix_for(where, message, words):
    assert words in fix_for(where, message)[1]


def test_state_from_a_real_runs_events_jsonl(tmp_path, tmp_cache):
    "A state replayed from events.jsonl matches the live one and the result."
    task = load_task("sst2"); sp = task.splits(30, 20, 60, seed=0)
    live = DashboardState()
    res = optimize(task.program(), sp.train, task.metric, valset=sp.val, testset=sp.test, optimizer="bootstrap",
                   lm=scripted_lm(toy_model), run_dir=str(tmp_path / "run"), tracking=False, progress=False, callbacks=[live.apply])
    replay = DashboardState()
    for e in read_events(tmp_path / "run" / "events.jsonl"): replay.apply(e)
    for st in (live, replay):
        assert st.status == "finished" and st.run_id == res.run_id
        assert len(st.candidates) == len(res.candidates) and st.best == res.best_candidate.score
        assert st.optimized == pytest.approx(res.optimized) and st.metric_calls == res.usage["metric_calls"]
    assert replay.to_dict() == live.to_dict()
    assert abs((live.total_calls or 0) - res.usage["metric_calls"]) <= 0.1 * res.usage["metric_calls"]  # the estimate is close


def test_widget_view_headless():
    stops = []
    dash = Dashboard(on_stop=lambda: stops.append(1), min_interval=0.0)
    evs = _events(finish="stopped")
    for e in evs[:6]: dash(e)
    assert 0 < dash.bar.value < 1 and not dash.stop_button.disabled and dash.resume_button.disabled
    assert "running" in dash.title.value and "candidate 0" in dash.stats.value
    dash.stop_button.click()
    assert stops == [1] and dash.stop_button.disabled
    for e in evs[6:]: dash(e)
    assert dash.bar.value == 1.0 and dash.bar.bar_style == "warning" and "stopped" in dash.title.value
    assert dash.resume_button.disabled                       # no on_resume given: nothing to resume with
    spec = dash.chart.outputs[0]["data"]["application/vnd.vegalite.v5+json"]
    assert spec["$schema"].endswith("v5.json") and len(spec["layer"][1]["data"]["values"]) == 5
    assert "5 candidates" in dash.table.value


def test_widget_throttle_never_loses_the_last_update():
    dash = Dashboard(min_interval=0.2)
    dash(RunStarted(optimizer="bootstrap", preset="light", n_train=30, n_val=20, n_test=60, estimate=dict(metric_calls=280)))
    dash(BudgetUsed(metric_calls=50))                         # within the interval: deferred, not dropped
    assert "50 of" not in dash.stats.value
    deadline = time.time() + 3
    while "50 of" not in dash.stats.value and time.time() < deadline: time.sleep(0.02)
    assert "50 of" in dash.stats.value


def test_widget_updates_from_a_worker_thread():
    dash, stream = Dashboard(min_interval=0.05), EventStream("t")
    stream.subscribe(dash)
    evs = _events(n_trials=40)
    th = threading.Thread(target=lambda: [stream.emit(e) for e in evs])
    th.start(); th.join(10)
    assert dash.state.status == "finished" and len(dash.state.candidates) == 40 and dash.bar.value == 1.0


def test_resume_button_and_reset():
    resumed = []
    dash = Dashboard(on_resume=lambda: resumed.append(1))
    for e in _events(finish="stopped"): dash(e)
    assert not dash.resume_button.disabled
    dash.resume_button.click()
    assert resumed == [1]
    dash.reset(DashboardState())
    assert dash.bar.value == 0 and dash.chart.outputs == () and dash.result.outputs == ()


def test_result_renders_in_the_view():
    from dspyopt_nb.run.result import Candidate, OptimizationResult
    r = OptimizationResult(run_id="x1", optimizer="mipro", preset="light", seed=0, lm="toy", baseline_scores=[0, 1],
                           optimized_scores=[1, 1], candidates=[Candidate(0, 0.5, 2, True)])
    dash = Dashboard()
    dash.show_result(r)
    data = dash.result.outputs[0]["data"]
    assert "dspyopt-result" in data["text/html"] and "x1" in data["text/markdown"]


def test_candidate_table_renders_result_candidates():
    from dspyopt_nb.run.result import Candidate
    cands = [Candidate(0, 0.5, 20, True, 1, None, {"self": "Classify <it>."}, 0), Candidate(1, 0.7, 20, True, 2, 0, {"self": "Be careful."}, 4)]
    t = CandidateTable(cands, best=1)
    assert "<details><summary>1 ★</summary>" in t._repr_html_() and "Classify &lt;it&gt;." in t._repr_html_()
    assert "| 1 ★ | 2 | 0 | 0.700 | 20 | full | 4 |" in t._repr_markdown_()
    many = CandidateTable([dict(id=i, trial=i, score=i / 100, n=5, full=False) for i in range(40)], limit=10)
    assert "30 more" in many._repr_html_() and "| 39 |" in many._repr_markdown_()  # the best ones are kept


def test_console_fallback_and_mode_choice():
    buf = io.StringIO()
    con = make_dashboard(mode="auto", file=buf)     # no Jupyter kernel here
    assert isinstance(con, ConsoleDashboard)
    for e in _events(): con(e)
    con(ErrorRecorded(where="metric", message="boom", count=1))
    out = buf.getvalue()
    assert "dspyopt: mipro/light r1: finished" in out and out.count("Fix:") == 1
    assert isinstance(make_dashboard(mode="widget"), Dashboard) and make_dashboard(mode="none") is None


def test_device_text_and_run_table():
    assert device_text({}) == "device: –"
    assert device_text(dict(engine="litellm", model="openai/gpt-4o-mini", device="remote")) == "litellm · openai/gpt-4o-mini · remote"
    t = RunTable([dict(run_id="a", status="running", progress=0.5, best=0.7)], cols=("run_id", "status", "progress", "best"))
    assert "| a | running | 50% | 0.700 |" in t._repr_markdown_() and "50%" in repr(t)


def test_bundle_renders_offline_in_jupyterlab():
    st = DashboardState()
    for e in _events(): st.apply(e)
    b = chart_bundle(score_chart(st))
    assert set(b) == {"application/vnd.vegalite.v5+json", "text/plain"} and b["text/plain"] == "<score chart: 10 points>"  # 5 candidates, 5 best-so-far steps
