"The insights layer against the real thing: the knowledge base on SQLite and PostgreSQL, a real run of the embedded model landing in it through execute()'s hook, sync/export/import, the CLI and the magic, recommendations and their traps on the shipped seed."
import json, os, subprocess, sys, warnings
from pathlib import Path

import pytest

from dspyopt_nb.engines.scripted import toy_lm
from dspyopt_nb.insights.kb import KnowledgeBase, knowledge, read_records, seed_path
from dspyopt_nb.optimize import optimize

HERE = Path(__file__).resolve().parents[1]
SIZES = dict(n_train=30, n_val=20, n_test=60)


def _toy_runs(root):
    "Two finished runs of the toy model in their own runs root (the hook records them in that root's store)."
    toy = toy_lm()
    kw = dict(task="sst2", lm=toy, tracking=False, progress=False, **SIZES)
    return [optimize(optimizer=o, run_dir=str(root / o), **kw) for o in ("none", "bootstrap")]


def test_every_run_lands_in_the_kb_and_sync_export_import_round_trip(tmp_path, monkeypatch, tmp_cache):
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs")); monkeypatch.delenv("DSPYOPT_DB_URL", raising=False)
    runs = _toy_runs(tmp_path / "runs")
    kb = KnowledgeBase()                                           # the default store beside the runs: the hook wrote there
    assert {r.run_id for r in runs} <= set(kb.frame()["run_id"]) and len(kb) == 2
    rec = kb.records(run_id=runs[1].run_id)[0]
    assert rec["task"] == "sst2" and rec["n_labels"] == 2 and rec["metric_kind"] == "binary" and len(rec["outcomes"]) == 60
    assert rec["held_out_gain"] == pytest.approx(runs[1].held_out_gain) and rec["shrinkage"] == pytest.approx(runs[1].shrinkage)
    other = KnowledgeBase(f"sqlite:///{tmp_path}/other.db")
    assert other.sync(tmp_path / "runs") == 2 and other.sync(tmp_path / "runs") == 0   # idempotent
    assert kb.export(tmp_path / "kb.jsonl.gz", provenance=dict(by="test")) == 2
    prov, recs = read_records(tmp_path / "kb.jsonl.gz")
    assert prov["by"] == "test" and len(recs) == 2
    third = KnowledgeBase(f"sqlite:///{tmp_path}/third.db")
    assert third.import_file(tmp_path / "kb.jsonl.gz") == 2 and third.import_file(tmp_path / "kb.jsonl.gz") == 2 and len(third) == 2
    assert len(third.outcomes()) == 120


def test_a_failing_hook_warns_and_the_run_stands(tmp_path, monkeypatch, tmp_cache):
    import dspyopt_nb.run.execute as ex
    monkeypatch.setitem(ex.FINISH_HOOKS, "knowledge base", "dspyopt_nb.insights.kb:no_such_function")
    with pytest.warns(UserWarning, match="Fix:"):
        res = optimize(task="sst2", optimizer="none", lm=toy_lm(), tracking=False, progress=False, run_dir=str(tmp_path / "r"), **SIZES)
    assert res.status == "finished" and (tmp_path / "r" / "result.json").exists()


@pytest.mark.slow
def test_kb_on_a_real_postgres(postgres_url, tmp_path, tmp_cache):
    from dspyopt_nb.store.db import schema_drift
    runs = _toy_runs(tmp_path / "runs")
    kb = KnowledgeBase(postgres_url)
    for r in runs: kb.add(r)
    kb.add(runs[0])                                                # the same run again: replaced, not duplicated
    assert schema_drift(postgres_url) == []
    got = {r["run_id"]: r for r in kb.records()}
    assert {r.run_id for r in runs} <= set(got) and len(got[runs[1].run_id]["outcomes"]) == 60
    n = kb.export(tmp_path / "pg.jsonl")
    assert KnowledgeBase(f"sqlite:///{tmp_path}/from-pg.db").import_file(tmp_path / "pg.jsonl") == n


@pytest.mark.slow
def test_a_real_run_of_the_embedded_model_lands_in_the_kb(tmp_path, monkeypatch):
    "The embedded model (Gemma 3 270M), a tiny gated search, recorded by execute()'s finish hook."
    from dspyopt_nb.engines.lm import lm
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs")); monkeypatch.delenv("DSPYOPT_DB_URL", raising=False)
    res = optimize(task="sst2", optimizer="gated", knobs=dict(num_candidates=1, max_labeled_demos=2), n_train=6, n_val=5, n_test=8,
                   lm=lm("local", n_threads=1), tracking=False, progress=False)
    rec = KnowledgeBase().records(run_id=res.run_id)[0]
    assert rec["lm_class"] == "tiny" and rec["lm_params_b"] == pytest.approx(0.27) and rec["optimizer"] == "gated"
    assert rec["metric_calls"] == res.usage["metric_calls"] > 0 and rec["wall_s"] > 0 and len(rec["outcomes"]) == 8
    assert rec["validation_gain"] == res.validation_gain and rec["held_out_gain"] == res.held_out_gain


def test_the_shipped_seed_has_provenance_and_real_runs():
    prov, recs = read_records(seed_path())
    assert prov["run_sessions"] and all(s.get("commit") and s.get("versions") for s in prov["run_sessions"])
    # the shipped seed: the 69 real runs of the embedded model benchmarks/seed_kb.py plans (4 tasks, 7 optimizers, 3 presets, 4 seeds)
    assert len(recs) >= 60 and len({r["task"] for r in recs}) >= 4 and len({r["optimizer"] for r in recs}) >= 7
    assert len({r["seed"] for r in recs}) >= 3 and len({r["preset"] for r in recs}) >= 3
    assert all(r["lm"].startswith("local/gemma-3-270m") and r["outcomes"] for r in recs)


def test_recommend_ranks_with_evidence_and_the_planners_cost():
    from dspyopt_nb.insights.recommend import recommend
    out = recommend(task="sst2", config=dict(n_train=30, n_val=15, n_test=40), lm=toy_lm(), budget=200, kb=False)
    assert out.items and out.best.supporting and out.best.gain_low <= out.best.gain <= out.best.gain_high
    assert all(r.estimate and r.estimate["metric_calls"] > 0 for r in out.items)            # the planner priced each
    assert out.best.settings["max_metric_calls"] == 200 and all("Fix:" in w for w in out.warnings)


def test_recommend_warns_about_known_traps():
    from dspyopt_nb.insights.recommend import recommend
    def rec(task, key, gain, base=0.5, **kw):
        opt, preset = key.split("/")
        return dict(run_id=f"{task}{key}{gain}{base}", status="finished", task=task, config_key=key, optimizer=opt, preset=preset, knobs={},
                    held_out_gain=gain, validation_gain=gain + 0.1, shrinkage=0.1, n_val=15, n_labels=2, label_balance=1.0, input_chars=100,
                    n_predictors=1, lm_params_b=0.27, lm_class="tiny", lm="local/gemma-3-270m", metric_calls=100, wall_s=30, lm_calls=100,
                    baseline=base, optimized=base + gain, **kw)
    small = [rec("a", "bootstrap/light", 0.04), rec("b", "bootstrap/light", 0.06), rec("a", "gepa/light", 0.0)]
    out = recommend(task="sst2", config=dict(n_train=30, n_val=15, n_test=40), lm="local", records=small, price=False)
    starts = [w.split(":")[0] for w in out.warnings]
    assert {"valset too small", "test set too small", "GEPA with a weak reflection LM", "shrinkage"} <= set(starts), out.warnings
    assert all("Fix:" in w for w in out.warnings)
    high = recommend(task="sst2", config=dict(n_train=30, n_val=15, n_test=40), lm="local", records=[rec("a", "bootstrap/light", 0.02, 0.95)], price=False)
    assert any(w.startswith("saturating metric") for w in high.warnings), high.warnings
    floor = recommend(task="sst2", config=dict(n_train=30, n_val=15, n_test=40), lm="local", records=[rec("a", "bootstrap/light", 0.01, 0.0)], price=False)
    assert any(w.startswith("floor") for w in floor.warnings), floor.warnings


def test_leave_one_task_out_covers_every_task():
    from dspyopt_nb.insights.recommend import validate_recommendations
    recs = knowledge(False)
    v = validate_recommendations(recs)
    assert set(v["task"]) == {r["task"] for r in recs} and v["realised"].notna().sum() >= 2
    assert ((v["best"] >= v["realised"] - 1e-12) | v["realised"].isna()).all()


def test_cli_kb_and_recommend(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE), "DSPYOPT_RUNS": str(tmp_path / "runs"), "DSPYOPT_NO_PROGRESS": "1"}
    env.pop("DSPYOPT_DB_URL", None)
    cli = [sys.executable, "-m", "dspyopt_nb.cli"]
    def run(*args):
        out = subprocess.run(cli + list(args), capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout
    assert "recommend" in run("--help")
    assert "1 run(s) merged" in run("kb", "import", str(_one_record(tmp_path)))
    assert "held-out gain per configuration" in run("kb", "patterns", "--no-seed")
    res = json.loads(run("recommend", "--task", "agnews", "--n-val", "20", "--n-test", "40", "--max-metric-calls", "150", "--json", "--top", "3"))
    assert len(res["items"]) == 3 and res["items"][0]["settings"]["max_metric_calls"] == 150 and res["profile"]["n_labels"] == 4


def _one_record(tmp_path) -> Path:
    _, recs = read_records(seed_path())
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps(dict(kind="provenance")) + "\n" + json.dumps(dict(kind="run", **recs[0])) + "\n")
    return p


def test_magic_recommend(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    import dspyopt_nb.notebook.magics as M
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs"))
    shell = InteractiveShell.instance()
    M.load_ipython_extension(shell)
    shell.user_ns["toy"] = toy_lm()
    out = shell.run_line_magic("dspyopt", "recommend banking77 --lm toy --n-train 30 --n-val 20 --n-test 40 --max-metric-calls 200 -o rec")
    assert shell.user_ns["rec"] is out and out.best is not None and out.profile["n_labels"] == 77
    assert "expected held-out gain" in out._repr_markdown_()
