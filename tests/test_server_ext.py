"""The panel's server extension (dspyopt_nb.notebook.server) in a real Jupyter server (pytest-jupyter): every route,
a run started, followed over server-sent events, stopped, resumed and compared, and bad input refused with a 4xx that
says what to fix (unknown run, malformed config, path traversal)."""
import asyncio, json, time
from urllib.parse import quote

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TOY = "scripted:dspyopt_nb.engines.scripted:toy_sentiment"
SLOW = "scripted:panel_models:slow_sentiment"
SMALL = dict(task="sst2", optimizer="bootstrap", n_train=20, n_val=10, n_test=20, tracking=False)


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"dspyopt_nb.notebook.server": True}}}


@pytest.fixture
def api(jp_fetch, tmp_path, monkeypatch):
    "Call the panel's API; answers (status, JSON). The panel's default runs directory is a fresh one."
    monkeypatch.setenv("DSPYOPT_RUNS", str(tmp_path / "runs"))
    async def call(path, method="GET", body=None, **params):
        kw = dict(method=method, params=params or None)
        if body is not None: kw["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method in ("POST", "PUT"): kw["body"] = "{}"
        try: r = await jp_fetch("dspyopt", "api", *path.split("/"), **kw)
        except HTTPClientError as e: return e.code, json.loads(e.response.body)
        return r.code, json.loads(r.body)
    return call


async def events(jp_fetch, run_id, since=0):
    "A run's whole event stream (it ends once the run has finished): [(event, data)]."
    r = await jp_fetch("dspyopt", "api", "runs", run_id, "events", params={"since": since}, request_timeout=120)
    assert r.headers["Content-Type"] == "text/event-stream"
    out = []
    for block in r.body.decode().split("\n\n"):
        lines = dict(l.split(": ", 1) for l in block.splitlines() if ": " in l and not l.startswith(":"))
        if "data" in lines: out.append((lines.get("event"), json.loads(lines["data"])))
    return out


async def wait_status(api, run_id, statuses, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, d = await api(f"runs/{run_id}")
        if status == 200 and d["run"]["status"] in statuses and (d["result"] or d["run"]["status"] == "running"): return d
        await asyncio.sleep(0.2)
    pytest.fail(f"run {run_id} did not reach {statuses}: {d['run']['status']}")


async def test_run_lifecycle(api, jp_fetch, tmp_path):
    # the panel's settings (from JupyterLab's settings registry) choose the runs directory
    status, s = await api("settings", "PUT", dict(runs_dir=str(tmp_path / "panel-runs")))
    assert status == 200 and s["root"] == str(tmp_path / "panel-runs") and s["tracking_uri"].endswith("panel-runs/mlflow.db"), s
    status, body = await api("runs")
    assert status == 200 and body["runs"] == []

    # start from YAML: the run id comes back at once (it is known at plan time)
    yaml = "\n".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in {**SMALL, "lm": TOY}.items())
    status, a = await api("runs", "POST", {"yaml": yaml})
    assert status == 201 and len(a["run_id"]) == 12 and a["name"] == f"bootstrap-{a['run_id']}", a
    # follow it: every event, numbered, from run_started to finished, then the stream ends
    evs = await events(jp_fetch, a["run_id"])
    kinds = [e for e, _ in evs]
    assert kinds[0] == "open" and "run_started" in kinds and "candidate" in kinds and kinds[-2:] == ["finished", "end"], kinds
    seqs = [d["seq"] for e, d in evs if e not in ("open", "end")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # a reconnecting browser (Last-Event-ID / since) gets only what it missed
    later = await events(jp_fetch, a["run_id"], since=seqs[-3])
    assert [d["seq"] for e, d in later if e not in ("open", "end")] == seqs[-2:]

    d = await wait_status(api, a["run_id"], {"finished"})
    res = d["result"]
    assert res["status"] == "finished" and res["candidates"] and set(res["comparison"]) >= {"diff", "ci", "p_value"}
    assert d["program"]["path"].endswith("program.json") and d["config"]["task"] == "sst2"
    status, body = await api("runs")
    row = body["runs"][0]
    assert row["run_id"] == a["run_id"] and row["optimized"] == res["optimized"] and row["progress"] == 1.0
    status, body = await api("runs", status="running")
    assert body["runs"] == []

    # a slower run from a config object, stopped midway: it ends 'stopped' with its best so far, tested on held-out data
    status, b = await api("runs", "POST", {"config": {**SMALL, "lm": SLOW}})
    assert status == 201, b
    await wait_status(api, b["run_id"], {"running"})
    await asyncio.sleep(1.0)
    status, s = await api(f"runs/{b['run_id']}/stop", "POST")
    assert status == 202 and s["status"] == "stopping"
    d = await wait_status(api, b["run_id"], {"stopped"})
    assert d["result"]["optimized"] is not None
    status, e = await api(f"runs/{b['run_id']}/stop", "POST")
    assert status == 409 and "not running" in e["message"] and "Fix:" in e["message"]

    # compare the two (same data, sizes and seed of the test split): B against A, paired
    status, c = await api("compare", a=a["run_id"], b=b["run_id"][:6])
    assert status == 200 and c["a"]["run_id"] == a["run_id"] and c["b"]["run_id"] == b["run_id"], c
    assert "p_value" in c["comparison"] and "B against A" in c["markdown"]

    # resume the stopped run in its own directory: it runs to the end (finished calls come from the cache)
    status, r = await api(f"runs/{b['run_id']}/resume", "POST")
    assert status == 201 and r["run_id"] == b["run_id"], r
    d = await wait_status(api, b["run_id"], {"finished"}, timeout=120)
    assert d["run"]["status"] == "finished"
    evs = await events(jp_fetch, b["run_id"])   # its log holds both attempts; the stream ends after the second
    assert [e for e, _ in evs].count("finished") == 2 and evs[-1][0] == "end"


async def test_catalogue_stream(api, jp_fetch, tmp_path):
    "The runs list as server-sent events: sent at once, and again when a run appears (from anywhere)."
    from dspyopt_nb.run.execute import execute
    from dspyopt_nb.run.plan import plan
    chunks = []
    async def listen():
        try: await jp_fetch("dspyopt", "api", "stream", streaming_callback=chunks.append, request_timeout=5)
        except Exception: pass  # the stream never ends by itself: the client's timeout ends it
    task = asyncio.ensure_future(listen())
    await asyncio.sleep(1.5)
    # a run made outside the panel (as %dspyopt run or a job would): in the same catalogue
    p = plan(dict(SMALL, lm=TOY, seed=3))  # the default runs root, as the magic's
    await asyncio.get_running_loop().run_in_executor(None, lambda: execute(p, progress=False))
    await task
    msgs = [json.loads(l[6:]) for l in b"".join(chunks).decode().splitlines() if l.startswith("data: ")]
    assert msgs[0]["runs"] == [] and msgs[-1]["runs"][0]["run_id"] == p.run_id, msgs[-1]
    assert msgs[-1]["runs"][0]["status"] == "finished"


@pytest.mark.parametrize("path,code,words", [
    ("runs/nope", 404, "no run 'nope'"),
    ("runs/" + quote("../../etc/passwd", safe=""), 400, "not a run id"),
    ("runs/" + quote("..", safe=""), 400, "not a run id"),
    ("runs/%2Fetc%2Fpasswd/events", 400, "not a run id"),
    ("runs/nope/events", 404, "no run"),
    ("compare", 400, "needs two runs"),
])
async def test_bad_reads(api, path, code, words):
    status, e = await api(path)
    assert status == code and words in e["message"] and "Fix:" in e["message"], (status, e)


async def test_bad_writes(api):
    status, e = await api("runs", "POST", {"yaml": "task: sst2\noptimizer: [mipro"})
    assert status == 400 and "not valid YAML at line 2" in e["message"] and "Fix:" in e["message"], e
    status, e = await api("runs", "POST", {"config": {"task": "sst3", "n_train": -1, "lm": TOY}})
    assert status == 400 and {p[0] for p in e["problems"]} == {"task", "n_train"} and "Fix:" in e["message"], e
    status, e = await api("runs", "POST", {"config": {"task": "sst2", "optimizer": "mipr", "lm": TOY}})
    assert status == 400 and "mipro" in e["message"], e
    status, e = await api("runs", "POST", {"config": {"optimizer": "none", "lm": TOY}})
    assert status == 400 and "nothing to optimize" in e["message"], e
    status, e = await api("runs", "POST", {"config": {}, "yaml": ""})
    assert status == 400 and "config" in e["message"], e
    status, e = await api("runs", "POST", "not json")
    assert status == 400 and "not JSON" in e["message"], e
    status, e = await api("runs/nope/stop", "POST")
    assert status == 404, e
    status, e = await api("runs/" + quote("../x", safe="") + "/resume", "POST")
    assert status == 400 and "not a run id" in e["message"], e
    status, e = await api("settings", "PUT", {"runs_directory": "/tmp"})
    assert status == 400 and "runs_dir" in e["message"], e
    status, e = await api("settings", "PUT", {"mlflow_uri": "http://127.0.0.1:5999"})  # a tracking server: opened as it is
    assert status == 200 and e["tracking_uri"] == "http://127.0.0.1:5999"
    status, e = await api("mlflow", "POST")
    assert status == 200 and e == {"url": "http://127.0.0.1:5999", "tracking_uri": "http://127.0.0.1:5999", "started": False}, e
    status, e = await api("settings", "PUT", {"mlflow_uri": "postgresql://db/mlflow"})
    status, e = await api("mlflow", "POST")
    assert status == 409 and "Fix:" in e["message"], e
    status, e = await api("schema")
    assert status == 200 and "sst2" in e["tasks"] and "bootstrap" in e["optimizers"]


async def test_experiments_and_alarms_routes(api, tmp_path):
    "The production routes read the store beside the runs: empty before there is one (none is made), then its experiment and alarm."
    status, d = await api("experiments")
    assert status == 200 and d["experiments"] == [] and d["store"] is None
    assert (await api("alarms"))[1]["programs"] == []
    assert not (tmp_path / "runs" / "dspyopt.db").exists()
    from test_panel_browser import production_store
    await asyncio.get_running_loop().run_in_executor(None, production_store, tmp_path / "runs")
    status, d = await api("experiments")
    assert status == 200 and [e["id"] for e in d["experiments"]] == ["fewshot"]
    e = d["experiments"][0]
    assert sum(e["units"].values()) == 40 and e["lead"]["variant"] == "few-shot" and len(e["lead"]["ci"]) == 2
    status, d = await api("experiments/fewshot")
    assert status == 200 and set(d["analysis"]["arms"]) == {"zero-shot", "few-shot"} and d["decisions"][0]["kind"] == "started"
    status, d = await api("experiments/nope")
    assert status == 404 and "Fix:" in d["message"]
    status, d = await api("alarms")
    assert status == 200 and d["programs"][0]["alarms"][0]["detector"] == "ddm"


@pytest.mark.parametrize("error, status", [("RuntimeError", 400), ("RunBusy", 409)])
def test_a_run_that_cannot_start_says_why(tmp_path, monkeypatch, error, status):
    """When the run's thread fails before the run holds its lock, starting it answers the error (not a silent 'incomplete' run):
    409 when another process took the run's lock first (the same start succeeds later), 400 for any other failure."""
    import dspyopt_nb.run.execute as ex
    from dspyopt_nb.notebook.panel_api import ApiError, Launcher
    from dspyopt_nb.run.errors import RunBusy
    def broken(plan, **kw): raise {"RuntimeError": RuntimeError, "RunBusy": RunBusy}[error]("the run's lock is taken. Fix: retry.")
    monkeypatch.setattr(ex, "execute", broken)
    with pytest.raises(ApiError) as e:
        Launcher().start(dict(task="sst2", lm=TOY, n_train=8, n_val=8, n_test=8, tracking=False), root=tmp_path)
    assert e.value.status == status and "did not start" in e.value.message and "lock is taken" in e.value.message
