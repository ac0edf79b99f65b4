"The serving runtime over real HTTP (`dspyopt serve` in its own process): rollout promotes a better version and a guardrail breach rolls it back, on SQLite and PostgreSQL; SIGKILL loses no acknowledged feedback; bad input and fuzzed requests get 4xx, never a 500."
import contextlib, json, os, random, signal, subprocess, sys, threading, time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import bindparam, text

from dspyopt_nb.serve.client import RuntimeClient, RuntimeHTTPError

ROOT = Path(__file__).resolve().parents[1]
ORACLE = "scripted:serve_toy:oracle"

def register_variants(uri: str) -> tuple[str, str]:
    "Version 1: SST-2's zero-shot program (production); version 2: the same with two demos (candidate)."
    import dspy
    from dspyopt_nb.data import load_task
    from dspyopt_nb.serve.registry import register_program
    task = load_task("sst2")
    few = task.program()
    few.demos = [dspy.Example(review="a dull, tired mess", sentiment="negative"), dspy.Example(review="a delight", sentiment="positive")]
    return (register_program(task.program(), "sst2", "task:sst2", alias="production", tracking_uri=uri),
            register_program(few, "sst2", "task:sst2", alias="candidate", tracking_uri=uri))

@contextlib.contextmanager
def server(tmp: Path, db: str, uri: str, *extra, lm: str = ORACLE):
    "`dspyopt serve` in a subprocess on a free port; yields (process, base URL); killed at the end."
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ready = tmp / f"ready-{port}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-c", "import sys; from dspyopt_nb.cli import main; sys.exit(main(sys.argv[1:]))", "serve", "--port", str(port),
           "--db", db, "--lm", lm, "--ready-file", str(ready), *extra]
    log = open(tmp / f"server-{port}.log", "w")
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert p.poll() is None and time.time() < deadline, (tmp / f"server-{port}.log").read_text()[-3000:]
            time.sleep(0.05)
        yield p, f"http://127.0.0.1:{port}"
    finally:
        if p.poll() is None: p.kill()
        p.wait(30)

def traffic(client: RuntimeClient, examples, n: int, rng: random.Random, threads: int = 8, program: str = "sst2") -> list:
    "n simulated users: a prediction each, then its label as feedback; returns the predictions."
    out, lock = [], threading.Lock()
    def user(k):
        for _ in range(k):
            ex = rng.choice(examples)
            try: p = client.predict(program, review=ex.review)
            except RuntimeHTTPError as e:  # a failing version answers 502: the trace keeps the error
                assert e.status == 502, e
                continue
            client.feedback(p["request_id"], label=ex.sentiment)
            with lock: out.append(p)
    ts = [threading.Thread(target=user, args=(n // threads,)) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join(300)
    return out

def wait_for(client, exp_id, statuses, feed, tries=40) -> dict:
    "Feed traffic until the experiment reaches one of `statuses` (the rollout looks every 0.3 s)."
    for _ in range(tries):
        e = client.experiment(exp_id)
        if e["status"] in statuses: return e
        feed(); time.sleep(0.4)
    raise AssertionError(f"{exp_id} stayed {e['status']}: {client.decisions(exp_id)}")

def acked_feedback_survives_sigkill(proc, client: RuntimeClient, db: str, examples):
    "Predictions and feedback flow while the server is SIGKILLed: every feedback it acknowledged is in the store."
    from dspyopt_nb.store.db import get_engine
    acked, stop = [], threading.Event()
    def user():
        c = RuntimeClient(client.base_url, timeout=5, retries=0)
        while not stop.is_set():
            try:
                p = c.predict("sst2", review=random.choice(examples).review, alias="production")
                if c.feedback(p["request_id"], score=1.0) == "ok": acked.append(p["request_id"])
            except RuntimeHTTPError: return
    ts = [threading.Thread(target=user) for _ in range(6)]
    for t in ts: t.start()
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    stop.set()
    for t in ts: t.join(30)
    assert len(acked) > 20
    with get_engine(db).connect() as c:
        q = text("select count(distinct request_id) from runtime_feedback where request_id in :ids").bindparams(bindparam("ids", expanding=True))
        stored = sum(c.execute(q, dict(ids=acked[i:i + 500])).scalar() for i in range(0, len(acked), 500))
    assert stored == len(acked), f"{len(acked) - stored} acknowledged feedback lost"

@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_rollout_promotes_then_a_guardrail_rolls_back_and_sigkill_loses_nothing(store, tmp_path, request):
    from dspyopt_nb.data import load_task
    from dspyopt_nb.serve.registry import aliases
    db = request.getfixturevalue("postgres_url") if store == "postgres" else f"sqlite:///{tmp_path}/store.db"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    v1, v2 = register_variants(uri)
    examples, rng = load_task("sst2").examples()[:300], random.Random(0)
    name = f"fewshot-{store}-{int(time.time())}"
    spec = dict(name=name, program="sst2", variants=[dict(name="zero-shot", ref="production"), dict(name="few-shot", ref="candidate")],
                unit="request", metric="label", stages=[0.5], mde=0.3, p_base=0.5, n_min=20, monitor_units=100_000,
                guardrails=[dict(metric="latency_p95_ms", max_increase=5000, min_samples=20), dict(metric="error_rate", max_increase=0.2, min_samples=20)])
    with server(tmp_path, db, uri, "--rollout-interval", "0.3", "--chaos") as (proc, base):
        client = RuntimeClient(base)
        started = client.start_experiment(spec)
        assert started["versions"] == {"zero-shot": v1, "few-shot": v2}
        e = wait_for(client, name, ("promoted", "rolled_back", "completed"), lambda: traffic(client, examples, 40, rng))
        assert e["status"] == "promoted" and e["winner"] == "few-shot", [(d["kind"], d["reason"]) for d in client.decisions(name)]
        assert aliases("sst2", uri)["production"] == v2
        # the promoted version starts failing: the watched guardrail rolls it back, and the alias moves back
        httpx.post(f"{base}/v1/chaos", json={"version": v2, "error_rate": 0.5}).raise_for_status()
        e = wait_for(client, name, ("rolled_back",), lambda: traffic(client, examples, 24, rng))
        kinds = [d["kind"] for d in client.decisions(name)]
        assert kinds == ["started", "promoted", "rolled_back"], kinds
        assert "error_rate" in client.decisions(name)[-1]["reason"]
        assert aliases("sst2", uri)["production"] == v1
        metrics = httpx.get(f"{base}/metrics").text
        assert 'dspyopt_rollout_decisions_total{kind="promoted"} 1.0' in metrics
        acked_feedback_survives_sigkill(proc, client, db, examples)

# -- bad input and fuzzing: the app in this process, served on a loopback port

@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.scripted import toy_lm
    from dspyopt_nb.serve.app import background_server, create_app
    from dspyopt_nb.serve.runtime import Runtime
    tmp = tmp_path_factory.mktemp("app")
    rt = Runtime(f"sqlite:///{tmp}/store.db", lm=toy_lm(), tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    rt.add_program("sst2", load_task("sst2").program())
    with background_server(create_app(rt, rollout=False, max_body_bytes=100_000)) as url: yield url

BAD = [
    ("malformed JSON", "POST", "/v1/programs/sst2/predict", b'{"inputs": {"review": ', 400),
    ("not an object", "POST", "/v1/programs/sst2/predict", b'[1, 2]', 422),
    ("unknown program", "POST", "/v1/programs/nope/predict", {"inputs": {"review": "x"}}, 404),
    ("unknown alias", "POST", "/v1/programs/sst2/predict", {"inputs": {"review": "x"}, "alias": "staging"}, 404),
    ("missing field", "POST", "/v1/programs/sst2/predict", {"inputs": {}}, 422),
    ("unknown field", "POST", "/v1/programs/sst2/predict", {"inputs": {"review": "x", "extra": 1}}, 422),
    ("wrong type", "POST", "/v1/programs/sst2/predict", {"inputs": {"review": ["x"]}}, 422),
    ("missing inputs", "POST", "/v1/programs/sst2/predict", {"unit": "u"}, 422),
    ("batch too large", "POST", "/v1/programs/sst2/batch", {"items": [{"inputs": {"review": "x"}}] * 101}, 422),
    ("unknown request id", "POST", "/v1/feedback", {"request_id": "0" * 32, "score": 1}, 404),
    ("feedback without a value", "POST", "/v1/feedback", {"request_id": "abc"}, 422),
    ("score not a number", "POST", "/v1/feedback", {"request_id": "abc", "score": "high"}, 422),
    ("unknown experiment", "GET", "/v1/experiments/nope", None, 404),
    ("bad experiment spec", "POST", "/v1/experiments", {"name": "x", "program": "sst2", "variants": [{"name": "a"}]}, 422),
    ("oversized body", "POST", "/v1/programs/sst2/predict", b"x" * 200_000, 413),
]

@pytest.mark.parametrize("what,method,path,body,status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx(app_url, what, method, path, body, status):
    kw = dict(content=body, headers={"content-type": "application/json"}) if isinstance(body, bytes) else dict(json=body)
    r = httpx.request(method, app_url + path, **(kw if body is not None else {}), timeout=30)
    assert r.status_code == status, r.text
    assert "Fix:" in r.json()["error"]

def test_chunked_oversized_body_is_refused(app_url):
    def chunks():
        for _ in range(50): yield b"x" * 10_000
    r = httpx.post(app_url + "/v1/programs/sst2/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)

def _operations(url):
    spec = httpx.get(url + "/openapi.json").json()
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            props = {}
            ref = (((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema", {}).get("$ref")
            if ref: props = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("properties", {})
            ops.append((method.upper(), path, list(props)))
    return ops

def test_fuzz_the_api_from_its_openapi_schema(app_url):
    ops = _operations(app_url)
    assert any(p == "/v1/programs/{program}/predict" for _, p, _ in ops)
    http = httpx.Client(base_url=app_url, timeout=30)
    seen = set()
    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        method, path, fields = data.draw(st.sampled_from(ops))
        for param in ("{program}", "{exp_id}"):
            if param in path: path = path.replace(param, data.draw(st.sampled_from(["sst2", "nope", "x" * 150, "%20", "a.b"])))
        if method == "GET": r = http.get(path)
        else:
            body = data.draw(st.one_of(JSON, st.fixed_dictionaries({}, optional={f: JSON for f in fields}),
                                       st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from(["review", "x"]), JSON, max_size=2)},
                                                             optional={"unit": JSON, "alias": JSON})))
            r = http.request(method, path, json=body)
        seen.add(r.status_code)
        assert r.status_code < 500, (method, path, r.text[:500])
        if r.status_code >= 400: assert "Fix:" in r.json()["error"], r.text
    one()
    assert {200, 404, 422} <= seen

def test_magic_lists_and_reports_experiments(tmp_path, monkeypatch):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from dspyopt_nb.store.db import migrate
    from dspyopt_nb.serve.experiments import ExperimentSpec, Variant, start_experiment
    from dspyopt_nb.serve.report import ExperimentReport
    db = f"sqlite:///{tmp_path}/store.db"; migrate(db)
    start_experiment(ExperimentSpec(name="magic-exp", program="sst2", variants=[Variant(name="a", ref="1"), Variant(name="b", ref="2")],
                                    p_base=0.5, mde=0.3, n_min=10), url=db, resolve=str, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dspyopt_nb.notebook.magics")
    table = shell.run_line_magic("dspyopt", f"experiments --db {db}")
    assert [r["run_id"] for r in table] == ["magic-exp"] and "running" in table._repr_markdown_()
    rep = shell.run_line_magic("dspyopt", f"experiments magic-exp --db {db} -o rep")
    assert isinstance(rep, ExperimentReport) and shell.user_ns["rep"] is rep and "stage **1%**" in rep._repr_markdown_()
    with pytest.raises(UsageError, match="Fix:"): shell.run_line_magic("dspyopt", f"experiments nope --db {db}")

def _inprocess(tmp_path, spec: dict):
    "An in-process runtime with SST-2's zero-shot and few-shot programs as variants, and an experiment on them."
    import dspy
    from dspyopt_nb.data import load_task
    from dspyopt_nb.engines.scripted import scripted_lm
    from dspyopt_nb.serve.experiments import start_experiment
    from dspyopt_nb.serve.runtime import Runtime
    from serve_toy import oracle
    task = load_task("sst2")
    few = task.program(); few.demos = [dspy.Example(review="a dull mess", sentiment="negative"), dspy.Example(review="a delight", sentiment="positive")]
    rt = Runtime(f"sqlite:///{tmp_path}/store.db", lm=scripted_lm(oracle))
    rt.add_program("sst2", task.program(), "zero-shot"); rt.add_program("sst2", few, "few-shot")
    start_experiment(dict(program="sst2", variants=[dict(name="zero-shot", ref="zero-shot"), dict(name="few-shot", ref="few-shot")], **spec),
                     url=rt.url, resolve=str, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    rt.refresh()
    return rt, task.examples()[:200]

def test_shadow_stage_mirrors_traffic_then_advances(tmp_path):
    from dspyopt_nb.serve.analysis import request_frame
    from dspyopt_nb.serve.experiments import decisions, get_experiment
    from dspyopt_nb.serve.rollout import Rollout
    rt, exs = _inprocess(tmp_path, dict(name="shadowed", shadow=True, metric="label", stages=[0.5], shadow_min=25, p_base=0.5, mde=0.3))
    for ex in exs[:40]:
        p = rt.predict("sst2", {"review": ex.review}, wait=True)
        assert p.variant == "zero-shot"                                  # users only ever see the control
        rt.feedback(p.request_id, label=ex.sentiment)
    rt.pool.shutdown(wait=True); rt.flush()
    df = request_frame(rt.url, "shadowed", 0)
    assert (df["source"] == "shadow").sum() == 40 and set(df.loc[df["source"] == "shadow", "mirror_of"]) <= set(df["id"])
    Rollout(rt.url, set_alias=lambda *a: None, aliases=lambda n: {}).step_all()
    d = decisions("shadowed", rt.url)[-1]
    assert d["kind"] == "advanced" and "shadow" in d["reason"], d
    assert d["details"]["shadow"]["few-shot"]["better"]                  # scored against the labels the primaries got
    assert get_experiment("shadowed", rt.url).weights == {"few-shot": 0.5, "zero-shot": 0.5}
    rt.writer.close()

def test_bandit_moves_traffic_to_the_better_arm(tmp_path):
    from dspyopt_nb.serve.experiments import decisions, get_experiment
    from dspyopt_nb.serve.rollout import Rollout
    rt, exs = _inprocess(tmp_path, dict(name="bandit", mode="bandit", metric="label", stages=[0.5], p_base=0.5, mde=0.3, n_min=30))
    ctl = Rollout(rt.url, set_alias=lambda *a: None, aliases=lambda n: {})
    for k in range(20):
        for ex in exs[10 * k: 10 * (k + 1)]:
            p = rt.predict("sst2", {"review": ex.review}, wait=True)
            rt.feedback(p.request_id, label=ex.sentiment)
        ctl.step_all(); rt.refresh()
        if get_experiment("bandit", rt.url).status != "running": break
    kinds = [d["kind"] for d in decisions("bandit", rt.url)]
    assert "reweighted" in kinds and kinds[-1] == "promoted", kinds
    assert get_experiment("bandit", rt.url).winner == "few-shot"
    rt.close()

@pytest.mark.slow
def test_decision_log_is_append_only_on_postgres(postgres_url):
    from sqlalchemy.exc import DBAPIError
    from dspyopt_nb.store.db import migrate, session
    from dspyopt_nb.serve.models import Decision
    migrate(postgres_url)
    with session(postgres_url) as s: s.add(Decision(ts=time.time(), experiment_id="pg-log", kind="started", reason="test", details="{}"))
    for sql in ("update runtime_decisions set reason = 'x' where experiment_id = 'pg-log'", "delete from runtime_decisions"):
        with pytest.raises(DBAPIError, match="append-only"):
            with session(postgres_url) as s: s.execute(text(sql))


def test_served_runtime_requires_tokens_verifies_signatures_redacts_traces(tmp_path):
    """`dspyopt serve --auth required --pii redact`: no token is 401 and a viewer starting an experiment is 403 (both
    audited), a version whose program.json changed after registration is refused (503) while the signed ones serve, and
    the trace keeps no e-mail address."""
    from dspyopt_nb.security import audit, auth
    from dspyopt_nb.serve.models import Request
    from dspyopt_nb.store.db import session
    from dspyopt_nb.run.catalogue import mlflow_client
    uri, db = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/store.db"
    v1, v2 = register_variants(uri)
    auth.add_identity("vera", "viewer", url=db); auth.add_identity("eve", "experimenter", url=db)
    viewer, experimenter = auth.issue_token("vera", url=db), auth.issue_token("eve", url=db)
    client = mlflow_client(uri)                                       # version 2's program changed after it was signed
    mv = client.get_model_version("sst2", v2)
    f = Path(client.download_artifacts(mv.run_id, "program/program.json", str(tmp_path)))
    f.write_text(f.read_text().replace("a delight", "a triumph"))
    client.log_artifact(mv.run_id, str(f), "program")
    spec = dict(name="ab", program="sst2", variants=[dict(name="zero", ref="production"), dict(name="few", ref="candidate")])
    with server(tmp_path, db, uri, "--auth", "required", "--pii", "redact", "--no-rollout") as (proc, base):
        anon, vera, eve = (RuntimeClient(base, headers={"Authorization": f"Bearer {t}"} if t else None) for t in (None, viewer, experimenter))
        with pytest.raises(RuntimeHTTPError) as e: anon.predict("sst2", review="fine")
        assert e.value.status == 401
        p = vera.predict("sst2", review="write to jane.roe@example.com: a dull film")
        assert p["version"] == v1
        with pytest.raises(RuntimeHTTPError) as e: vera.predict("sst2", review="fine", alias="candidate")
        assert e.value.status == 503 and "signature" in str(e.value)
        with pytest.raises(RuntimeHTTPError) as e: vera.start_experiment(spec)
        assert e.value.status == 403 and "experimenter" in str(e.value)
        assert eve.start_experiment(spec)["status"] == "running"
    with session(db) as s: stored = s.get(Request, p["request_id"]).inputs
    assert "jane.roe@example.com" not in stored and "<EMAIL_ADDRESS>" in stored
    denied = [(e["action"], e["actor"]) for e in audit.audit_entries(db) if e["outcome"] in ("denied", "failed")]
    assert ("experiments.write", "token:vera") in denied and ("login", "http:127.0.0.1") in denied
    assert ("load_artifact", "denied") in {(e["action"], e["outcome"]) for e in audit.audit_entries(db)}   # the refused version


def test_served_calls_reach_an_otlp_collector(tmp_path, monkeypatch):
    "`dspyopt serve --otel`: each served call arrives at an OTLP/HTTP collector (a loopback one decoding the protobuf) as a span."
    import http.server
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    got = []
    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            req = ExportTraceServiceRequest(); req.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            got.extend((self.path, s) for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans)
            self.send_response(200); self.send_header("Content-Type", "application/x-protobuf"); self.end_headers()
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    uri, db = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/store.db"
    register_variants(uri)
    try:
        with server(tmp_path, db, uri, "--no-rollout") as (proc, base):
            client = RuntimeClient(base)
            ids = {client.predict("sst2", review=r)["request_id"] for r in ("a gorgeous film", "a dull mess")}
            deadline = time.time() + 30
            while len(got) < 2 and time.time() < deadline: time.sleep(0.1)
    finally:
        srv.shutdown()
    assert {p for p, _ in got} == {"/v1/traces"}
    attrs = [{a.key: a.value for a in s.attributes} for _, s in got]
    assert {a["dspyopt.request_id"].string_value for a in attrs} == ids
    assert {s.name for _, s in got} == {"dspyopt.predict sst2"} and all(a["dspyopt.version"].string_value == "1" for a in attrs)


@pytest.mark.parametrize("user_setting, bar", [(None, False), ("true", True)])
def test_mlflow_downloads_keep_the_logs_free_of_progress_bars(tmp_path, monkeypatch, capfd, user_setting, bar):
    "Every MLflow client dspyopt makes (services, registry, analytics) downloads quietly, unless the user asked for bars."
    from dspyopt_nb.run.catalogue import artifact_location, mlflow_client
    if user_setting is None: monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    else: monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", user_setting)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    run = client.create_run(client.create_experiment("bars", artifact_location=artifact_location(uri)))
    (tmp_path / "state.json").write_text("{}")
    client.log_artifact(run.info.run_id, str(tmp_path / "state.json"))
    capfd.readouterr()
    client.download_artifacts(run.info.run_id, "state.json", str(tmp_path))
    assert ("Downloading artifacts" in capfd.readouterr().err) is bar
