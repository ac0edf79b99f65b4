"%dspyopt through a real IPython InteractiveShell: parsing, settings layering, errors, background runs, stop/resume, lookups."
import json, time
from pathlib import Path

import dspy
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import dspyopt_nb.notebook.magics as M
import dspyopt_nb.notebook.runs as NR
from dspyopt_nb.data import load_task
from dspyopt_nb.engines.scripted import ScriptedEngine, scripted_lm
from dspyopt_nb.run.result import OptimizationResult
from toy import toy_model

SIZES = "--n-train 30 --n-val 20 --n-test 60"


@pytest.fixture
def ip(tmp_path, monkeypatch, tmp_cache):
    "A shell with the extension loaded, scripted models in the namespace, and runs kept under tmp_path."
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "dspyopt" / "runs"))
    shell = InteractiveShell.instance()
    shell.config.pop("Dspyopt", None)                                  # %config of an earlier test is forgotten
    shell.run_line_magic("load_ext", "dspyopt_nb.notebook.magics")
    M.load_ipython_extension(shell)                                    # a fresh Dspyopt with the default settings
    shell.user_ns.update(toy=scripted_lm(toy_model), slow=scripted_lm(toy_model, "slow", delay_s=0.01))
    NR.RUNS.clear()
    yield shell
    for h in list(NR.RUNS.values()): h.stop(); h.wait(60)
    NR.RUNS.clear()


def magic(shell) -> M.Dspyopt: return [c for c in shell.configurables if isinstance(c, M.Dspyopt)][-1]


def line(shell, text):
    "Run `%dspyopt text` as a user would; UsageError comes back raised."
    return shell.run_line_magic("dspyopt", text)


def test_extension_registers_line_and_cell_magic(ip):
    assert "dspyopt" in ip.magics_manager.magics["line"] and "dspyopt" in ip.magics_manager.magics["cell"]
    doc = ip.magics_manager.magics["line"]["dspyopt"].__doc__
    assert "%dspyopt run sst2" in doc and "--max-metric-calls" in doc      # what %dspyopt? shows


def test_package_extension_loads_and_unloads(ip):
    import dspyopt_nb
    dspyopt_nb.unload_ipython_extension(ip)
    assert "dspyopt" not in ip.magics_manager.magics["line"] and not any(isinstance(c, M.Dspyopt) for c in ip.configurables)
    dspyopt_nb.load_ipython_extension(ip)                                # what %load_ext dspyopt_nb calls
    assert "dspyopt" in ip.magics_manager.magics["cell"] and magic(ip).preset == "light"


def test_settings_layer_defaults_then_yaml_then_line(ip, monkeypatch):
    seen = []
    monkeypatch.setattr(M, "start_run", lambda settings, ns, names=None, **kw: seen.append((settings, names or {})) or type("H", (), dict(view=None))())
    ip.run_line_magic("config", "Dspyopt.preset = 'medium'")
    ip.run_line_magic("config", "Dspyopt.lm = 'toy'")
    assert magic(ip).preset == "medium"
    line(ip, "run sst2 --optimizer bootstrap --seed 3 -k num_candidate_programs=2 --max-cost 0.5 --no-tracking")
    s, _ = seen[-1]
    assert (s["task"], s["optimizer"], s["preset"], s["lm"], s["seed"], s["knobs"], s["max_cost"], s["tracking"]) == \
           ("sst2", "bootstrap", "medium", "toy", 3, {"num_candidate_programs": 2}, 0.5, False)
    ip.run_cell_magic("dspyopt", "--preset light -o out", "task: agnews\noptimizer: gepa\npreset: heavy\nn_train: 12\nknobs: {max_metric_calls: 50}")
    s, _ = seen[-1]
    assert (s["task"], s["optimizer"], s["preset"], s["n_train"], s["knobs"]) == ("agnews", "gepa", "light", 12, {"max_metric_calls": 50})
    line(ip, "run prog data.train metric --valset data.val")
    s, names = seen[-1]
    assert names == dict(program="prog", trainset="data.train", metric="metric", valset="data.val") and "task" not in s


def test_every_run_setting_is_an_option_and_a_default():
    "Issue 11: the magic's options and %config defaults are derived from RunConfig; nothing drifts."
    from dspyopt_nb.run.config import RunConfig, field_kind
    opts = {a.dest for a in M.Dspyopt.dspyopt.parser._actions}
    assert set(RunConfig.model_fields) <= opts
    traits = set(M.Dspyopt.class_traits(config=True))
    assert {n for n, f in RunConfig.model_fields.items() if field_kind(f.annotation) != "dict"} <= traits


@pytest.mark.parametrize("text,words", [
    ("rn sst2", "did you mean 'run'"), ("run sst2 --preset huge --lm toy", "unknown preset"),
    ("run sst2 --optimizer adam --lm toy", "unknown optimizer"), ("run sst2 --seed x", "invalid int value"),
    ("run sst2 --frobnicate", "unrecognized arguments"), ("run nosuchtask --lm toy", "unknown task"),
    ("run progam trainset metric --lm toy", "'progam' is not defined"), ("run a b", "takes a task or PROGRAM TRAINSET METRIC"),
    ("run sst2 --lm nosuchmodel", "nosuchmodel"), ("run sst2 --lm toy -k nope=1 --optimizer bootstrap", "unknown knob"),
    ("run sst2 --lm toy --max-metric-calls 0", "greater than 0"), ("run sst2 --lm toy --n-train 5000", "has 872"),
    ("show", "show takes one run"), ("show nosuchrun", "no run 'nosuchrun'"), ("stop", "no run is running"),
    ("compare a", "compare takes two runs"), ("resume zzz", "no run 'zzz'"), ('run "sst2', "close the quotes")])
def test_bad_input_is_one_line_with_the_fix(ip, text, words):
    with pytest.raises(UsageError) as ei: line(ip, text)
    msg = str(ei.value)
    assert words in msg and "Fix" in msg and "\n" not in msg, msg


def test_bad_input_in_the_shell_shows_no_traceback(ip, capsys):
    res = ip.run_cell("%dspyopt run sst2 --preset huge --lm toy")
    assert isinstance(res.error_in_exec, UsageError)
    err = capsys.readouterr()
    assert "Traceback" not in err.out + err.err and "unknown preset" in err.out + err.err


@pytest.mark.parametrize("cell,words", [("task: sst2\n  optimizer: [mipro", "not valid YAML at line 2"),
                                        ("- a\n- b", "holds a list"), ("task: sst2\noptimiser: mipro", "did you mean 'optimizer'"),
                                        ("task: sst2\nseed: many", "seed: Input should be a valid integer"),
                                        ("task: sst2\nknobs: 3", "knobs: Input should be a valid dictionary")])
def test_bad_yaml_cells(ip, cell, words):
    with pytest.raises(UsageError, match=words): ip.run_cell_magic("dspyopt", "", cell)
    with pytest.raises(UsageError, match="settings of a run"): ip.run_cell_magic("dspyopt", "status", "task: sst2")


def test_name_lookup_suggests_close_names(ip):
    ip.user_ns.update(my_program=dspy.Predict("q -> a"), trainset=[1, 2], metric=len)
    with pytest.raises(UsageError, match="did you mean 'my_program'"): line(ip, "run my_progam trainset metric --lm toy")
    with pytest.raises(UsageError, match="not a list of dspy.Example"): line(ip, "run my_program trainset metric --lm toy")
    ip.user_ns["trainset"] = "text"
    with pytest.raises(UsageError, match="not a list of dspy.Example"): line(ip, "run my_program trainset metric --lm toy")
    ip.user_ns["prog"] = "not a program"
    with pytest.raises(UsageError, match="not a dspy.Module"): line(ip, "run prog trainset metric --lm toy")
    ip.user_ns["notlm"] = 3
    with pytest.raises(UsageError, match="not a dspy.LM"): line(ip, "run sst2 --lm notlm")


def test_run_waits_binds_and_leaves_records(ip, tmp_path, capsys):
    res = line(ip, f"run sst2 --lm toy --optimizer bootstrap {SIZES} --no-tracking --wait -o res")
    assert isinstance(res, OptimizationResult) and ip.user_ns["res"] is res
    assert res.status == "finished" and res.optimized > res.baseline and len(res.optimized_scores) == 60
    d = Path(res.run_dir)
    assert d.parent == tmp_path / "dspyopt" / "runs"
    assert json.loads((d / "notebook.json").read_text())["settings"]["task"] == "sst2"
    kinds = [json.loads(l)["kind"] for l in (d / "events.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "finished"          # the magic's run logs like optimize()'s own
    h = NR.RUNS[res.run_id]
    assert h.state.status == "finished" and h.state.best == res.best_candidate.score
    out = capsys.readouterr().out
    assert "Going to sample" not in out and "Scores so far" not in out   # DSPy's optimizers' chatter is counted, not shown
    assert any(k.startswith("print: ") for k in res.log_summary)
    st = line(ip, "status")
    assert st[0]["run_id"] == res.run_id and st[0]["status"] == "finished"
    assert line(ip, f"status {res.run_id[:5]}").status == "finished"
    assert line(ip, f"show {res.run_id[:6]} -o again") is res and ip.user_ns["again"] is res


def test_program_trainset_metric_by_name(ip):
    task = load_task("sst2"); sp = task.splits(30, 20, 60, seed=1)
    ip.user_ns.update(prog=task.program(), sp=sp, acc=task.metric)
    res = line(ip, "run prog sp.train acc --valset sp.val --testset sp.test --lm toy --optimizer none --no-tracking --wait --quiet")
    assert res.optimizer == "none" and res.data["n_test"] == 60 and res.data["n_val"] == 20


def test_background_run_stop_then_resume(ip, capsys):
    prompts = []
    def rec(p): prompts.append(p); time.sleep(0.01); return toy_model(p)
    ip.user_ns["rec"] = scripted_lm(rec)
    assert line(ip, f"run sst2 --lm rec --optimizer bootstrap {SIZES} --no-tracking --quiet -o bg") is None
    h = list(NR.RUNS.values())[-1]
    deadline = time.time() + 60
    while h.state.metric_calls < 20 and not h.done.is_set() and time.time() < deadline: time.sleep(0.05)
    assert h.status == "running", "the run ended before it could be stopped"
    assert ip.run_cell("x = 1 + 1").success and ip.user_ns["x"] == 2     # the notebook stays usable meanwhile
    line(ip, "stop")
    assert "stopping run" in capsys.readouterr().out
    assert h.wait(60).status == "stopped" and ip.user_ns["bg"].message == "stopped on request"
    with pytest.raises(UsageError, match="not running"): line(ip, f"stop {h.run_id}")
    first = set(prompts); n_first = len(prompts)
    again = line(ip, f"resume {h.run_id} --wait --quiet -o bg2")
    assert again.status == "finished" and ip.user_ns["bg2"] is again and again.run_id == h.run_id
    assert not first & set(prompts[n_first:])                            # nothing the first attempt asked is asked again


def test_resume_from_disk_after_a_restart(ip):
    res = line(ip, f"run sst2 --lm toy --optimizer none {SIZES} --no-tracking --wait --quiet")
    NR.RUNS.clear()                                                        # as after a kernel restart
    (Path(res.run_dir) / "result.json").unlink()
    again = line(ip, f"resume {res.run_id} --wait --quiet -o back")
    assert again.run_id == res.run_id and again.optimized_scores == res.optimized_scores


def test_same_run_twice_returns_the_finished_one(ip):
    first = line(ip, f"run sst2 --lm toy --optimizer none {SIZES} --no-tracking --wait --quiet")
    counted = ip.user_ns["counted"] = scripted_lm(toy_model)           # the same model, so the same run
    NR.RUNS.clear()
    again = line(ip, f"run sst2 --lm counted --optimizer none {SIZES} --no-tracking --wait")
    assert again.run_id == first.run_id and counted.engine.calls == 0
    h = NR.RUNS[first.run_id]
    assert h.state.status == "finished" and "already finished" in h.state.message


def test_mistakes_in_the_data_are_refused_before_the_run_starts(ip):
    ip.user_ns.update(prog=dspy.Predict("review -> sentiment"), tiny=load_task("sst2").splits(3, 0, 0).train, acc=load_task("sst2").metric)
    n = len(NR.RUNS)
    with pytest.raises(UsageError, match="trainset has .*Fix:"): line(ip, "run prog tiny acc --lm toy --optimizer none --no-tracking --wait")
    assert len(NR.RUNS) == n                                                # planned in the foreground: nothing started


def test_failure_inside_the_run_reaches_the_dashboard(ip, tmp_path):
    import dspyopt_nb.notebook.dashboard as D
    bad = "bogus://nowhere"                                                # the run fails as it opens its MLflow run
    with pytest.raises(UsageError, match="the run failed"): line(ip, f"run sst2 --lm toy --optimizer none {SIZES} --tracking {bad} --wait")
    h = list(NR.RUNS.values())[-1]
    assert h.state.status == "failed" and h.state.errors[0]["fix"]
    assert "Fix:" in D.state_html(h.state)


def test_compare_and_list_with_mlflow(ip, tmp_path):
    a = line(ip, f"run sst2 --lm toy --optimizer none {SIZES} --wait --quiet")          # tracked in the default store
    b = line(ip, f"run sst2 --lm toy --optimizer bootstrap {SIZES} --wait --quiet")
    assert a.mlflow_run_id and b.mlflow_run_id
    cmp = line(ip, f"compare {a.run_id} {b.run_id}")
    assert cmp.comparison.n == 60 and cmp.comparison.diff == pytest.approx(b.optimized - a.optimized)
    assert "B against A" in cmp._repr_markdown_() and "p = " in repr(cmp)
    rows = {r.run_id: r for r in line(ip, "list")}
    assert {a.run_id, b.run_id} <= set(rows) and rows[b.run_id].mlflow_run_id == b.mlflow_run_id
    assert rows[b.run_id].optimized == pytest.approx(b.optimized)
    # found in MLflow alone: no session, no run directory
    NR.RUNS.clear()
    import shutil; shutil.rmtree(b.run_dir)
    back = line(ip, f"show {b.run_id}")
    assert back.program_state == b.program_state
    assert line(ip, f"show {b.mlflow_run_id}").run_id == b.run_id
    c = line(ip, f"run sst2 --lm toy --optimizer none --n-train 30 --n-val 20 --n-test 50 --no-tracking --wait --quiet")
    with pytest.raises(UsageError, match="different held-out examples"): line(ip, f"compare {a.run_id} {c.run_id}")


def test_dry_run_and_lm(ip):
    est = line(ip, f"run sst2 --lm toy --optimizer mipro {SIZES} --dry-run --no-tracking")
    assert est.run_id and est.estimate.lm_calls > 0 and not NR.RUNS
    rep = line(ip, "lm toy")
    assert magic(ip).lm == "toy" and rep.info["engine"] == "scripted" and "CPU" in repr(rep)


def test_the_same_run_cannot_start_twice_at_once(ip):
    line(ip, f"run sst2 --lm slow --optimizer bootstrap {SIZES} --no-tracking --quiet")
    with pytest.raises(UsageError, match="already running"):
        line(ip, f"run sst2 --lm slow --optimizer bootstrap {SIZES} --no-tracking --quiet -o other")
    line(ip, "stop")


def test_console_dashboard_outside_jupyter(ip, capsys):
    line(ip, f"run sst2 --lm toy --optimizer none {SIZES} --no-tracking --wait")
    err = capsys.readouterr().err
    assert "dspyopt: none/light" in err and "finished" in err


def test_interrupt_while_waiting_stops_the_run(ip, monkeypatch):
    line(ip, f"run sst2 --lm slow --optimizer bootstrap {SIZES} --no-tracking --quiet")
    h = list(NR.RUNS.values())[-1]
    calls = []
    real_wait = h.done.wait
    def interrupted(timeout=None):
        if not calls: calls.append(1); raise KeyboardInterrupt
        return real_wait(timeout)
    monkeypatch.setattr(h.done, "wait", interrupted)
    assert NR.wait_for(h).status == "stopped"
