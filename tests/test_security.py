"""The security layer against the real components: encrypted and signed run artifacts (tampered, truncated, swapped,
wrong key, rotation), no pickle on any load path, PII redaction with a canary leak test through a real MLflow store and
a loopback LM server, erasure with its record, identities/tokens/roles and the hash-chained audit trail on SQLite and
PostgreSQL, MLflow's basic-auth server, the compliance report and the CLI's exit codes."""
import json, os, subprocess, sys, threading, time, urllib.error, urllib.request
from pathlib import Path

import dspy
import pytest
from conftest import free_port

from dspyopt_nb.data import load_task
from dspyopt_nb.engines.scripted import scripted_lm, toy_sentiment
from dspyopt_nb.optimize import optimize
from dspyopt_nb.run.catalogue import find_run, list_runs, load_result, load_run, read_result
from dspyopt_nb.run.errors import OptimizeError
from dspyopt_nb.security import audit, auth, crypto, signing
from dspyopt_nb.security.crypto import CryptoError, Keyring, LocalKey, write_key_file
from dspyopt_nb.security.signing import PickleRefused, SignatureError, no_pickle, pickle_sites

TASK = load_task("sst2")
SP = TASK.splits(n_train=16, n_val=8, n_test=12, seed=0)

def _opt(run_dir, trainset=None, **kw):
    kw.setdefault("tracking", False)
    return optimize(TASK.program(), trainset or SP.train, TASK.metric, valset=SP.val, testset=SP.test, optimizer="bootstrap",
                    lm=kw.pop("lm", None) or scripted_lm(toy_sentiment), run_dir=str(run_dir), progress=False, **kw)

def _files(root) -> list[Path]: return [p for p in Path(root).rglob("*") if p.is_file()]

def _denied(action: str | None = None, url=None) -> list[dict]:
    "Refused attempts and failed logins in the audit trail, newest first."
    return [e for e in audit.audit_entries(url, limit=200) if e["outcome"] in ("denied", "failed") and (action is None or e["action"] == action)]

@pytest.fixture
def keyfile(tmp_path, monkeypatch):
    "Encryption at rest on, with a key file."
    p = tmp_path / "kek.json"; write_key_file(p, Keyring(LocalKey.generate()))
    monkeypatch.setenv("DSPYOPT_ENCRYPT", "1"); monkeypatch.setenv("DSPYOPT_KEK_FILE", str(p))
    old = dspy.cache                                 # an encrypted run seals DSPy's LM cache: the next tests get it back
    yield p
    dspy.cache = old

# -- artifacts at rest -------------------------------------------------------------------------------------------

def test_encrypted_run_leaves_no_plaintext_and_rotation_rewraps(tmp_path, tmp_cache, keyfile, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = _opt(tmp_path / "runs" / "enc", tracking=uri)
    demo = max((d["review"] for d in res.program_state["demos"]), key=len)
    run_dir = Path(res.run_dir)
    for f in ("config.json", "result.json", "program.json"): assert crypto.is_encrypted(run_dir / f), f
    assert all(l.startswith(crypto.LINE_PREFIX) for l in (run_dir / "events.jsonl").read_text().splitlines())
    # a demo (training data) is in no byte on disk: run folder, MLflow artifacts; no temporary file left behind
    for p in _files(run_dir) + _files(tmp_path / "mlartifacts"):
        assert demo.encode() not in p.read_bytes(), p
    assert not [p for p in _files(run_dir) if ".tmp" in p.name]
    assert dspy.cache.dspyopt_kek == crypto.keyring().key_id                                # the LM cache is sealed too
    assert _files(Path(os.environ["DSPY_CACHEDIR"]) / "sealed")
    assert load_run(res.run_id, tmp_path / "runs").program_state == res.program_state      # reads back, signature checked
    assert load_result(res.mlflow_run_id, uri, verify="strict").run_id == res.run_id       # MLflow's copy too
    assert list_runs(tmp_path / "runs")[0].baseline == res.baseline
    # the wrong key, or none: a clear error naming the fix
    monkeypatch.delenv("DSPYOPT_KEK_FILE")
    with pytest.raises(CryptoError, match="Fix:"): load_run(res.run_id, tmp_path / "runs")
    monkeypatch.setenv("DSPYOPT_KEK", LocalKey.generate().to_b64())
    with pytest.raises(CryptoError, match="not among the configured keys"): load_run(res.run_id, tmp_path / "runs")
    assert len(_denied("decrypt")) >= 2 and all(e["target"].startswith(str(run_dir)) for e in _denied("decrypt"))  # refused reads audited
    monkeypatch.delenv("DSPYOPT_KEK"); monkeypatch.setenv("DSPYOPT_KEK_FILE", str(keyfile))
    # rotation re-wraps the data keys, never the data, and the run stays valid
    from dspyopt_nb.security.cli import rotate_keys
    body = (run_dir / "result.json").read_bytes().split(b"\n", 2)[2]
    old_id = crypto.keyring().key_id
    out = rotate_keys(tmp_path / "runs", also=[tmp_path / "mlartifacts"], retire=True)
    assert out["old_key"] == old_id and out["files_rewrapped"] >= 6 and out["retired"] and crypto.keyring().key_id != old_id
    assert out["folders_resigned"] == 2 and not out["refused"]                               # the run folder and MLflow's copy
    assert (run_dir / "result.json").read_bytes().split(b"\n", 2)[2] == body
    assert read_result(run_dir, verify="strict").run_id == res.run_id
    assert load_result(res.mlflow_run_id, uri, verify="strict").run_id == res.run_id       # the old key is gone: all re-wrapped
    assert [e["action"] for e in audit.audit_entries(limit=1)] == ["rotate_keys"]

def test_the_encrypted_lm_cache_holds_no_plaintext(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPYOPT_KEK", LocalKey.generate().to_b64())
    old, calls = dspy.cache, []
    try:
        crypto.encrypted_lm_cache(tmp_path / "c", memory=False)
        lm = scripted_lm(lambda p: (calls.append(p), "CANARY-ANSWER-77")[1])
        assert lm("q1") == lm("q1") == ["CANARY-ANSWER-77"] and len(calls) == 1
        assert not any(b"CANARY-ANSWER-77" in p.read_bytes() for p in _files(tmp_path / "c"))
    finally: dspy.cache = old

# -- signatures, tampering, pickle ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("signed")
    res = _opt(root / "runs" / "a")
    other = _opt(root / "runs" / "b", trainset=SP.train[:12])
    return root, res, other

def _copy(run_dir, dest) -> Path:
    import shutil; shutil.copytree(run_dir, dest); return Path(dest)

def test_tampered_truncated_or_swapped_artifacts_are_refused_and_audited(tmp_path, signed_run):
    root, res, other = signed_run
    assert signing.verify_artifacts(res.run_dir, mode="strict") == "valid"
    d = _copy(res.run_dir, tmp_path / "one-byte")
    b = bytearray((d / "program.json").read_bytes()); b[len(b) // 2] ^= 1; (d / "program.json").write_bytes(bytes(b))
    with pytest.raises(SignatureError, match="program.json"): read_result(d, verify="strict")
    d = _copy(res.run_dir, tmp_path / "truncated")
    (d / "result.json").write_bytes((d / "result.json").read_bytes()[:200])
    with pytest.raises(SignatureError, match="failed signature verification"): read_result(d)
    d = _copy(res.run_dir, tmp_path / "swapped")
    (d / "program.json").write_bytes((Path(other.run_dir) / "program.json").read_bytes())
    with pytest.raises(SignatureError, match="program.json"): read_result(d)
    d = _copy(res.run_dir, tmp_path / "unsigned"); (d / "signature.sig").unlink()
    with pytest.raises(SignatureError, match="not signed"): read_result(d, verify="strict")
    with pytest.warns(UserWarning, match="not signed"): assert read_result(d).run_id == res.run_id     # the library default warns
    assert len(_denied("load_artifact")) >= 4
    # a finished run whose result was changed is never returned by optimize's resume path
    d = Path(res.run_dir); good = (d / "result.json").read_bytes()
    try:
        (d / "result.json").write_bytes(good.replace(b'"status": "finished"', b'"status": "finished" '))
        with pytest.raises(SignatureError): _opt(d)
    finally: (d / "result.json").write_bytes(good)

def test_no_code_path_loads_a_pickle(tmp_path, signed_run):
    root, res, _ = signed_run
    assert pickle_sites() == []                                      # the package source: no pickle/cloudpickle/joblib loads
    assert [x.split(":")[0] for x in pickle_sites(allowed=True)] == ["dspyopt_nb/learn/learner.py", "dspyopt_nb/security/crypto.py"]   # the marked exceptions: the learner's HMAC-authenticated detectors, the sealed LM cache
    with no_pickle():                                                # any unpickling inside fails: the load paths use none
        assert load_run(res.run_id, root / "runs").run_id == res.run_id
        assert read_result(res.run_dir, verify="strict").program_state
        assert find_run(res.run_id[:6], root / "runs").run_id == res.run_id
        with pytest.raises(PickleRefused): __import__("pickle").loads(b"\x80\x04K\x01.")
    import pickle
    d = _copy(res.run_dir, tmp_path / "pkl")
    (d / "result.json").write_bytes(pickle.dumps({"run_id": "x"}))
    with pytest.raises(PickleRefused, match="pickle"): signing.load_json(d / "result.json")
    with pytest.raises(PickleRefused, match="never pickles"): signing.load_json(d / "program.pkl")

def test_path_traversal_and_malformed_ids_are_refused(tmp_path, signed_run):
    root, res, _ = signed_run
    before = sorted(p.name for p in (root / "runs").iterdir())
    for ref in ("../../etc/passwd", "..", "a/../../b", "x" * 300, "run\x00id"):
        with pytest.raises(OptimizeError, match="Fix:"): find_run(ref, root / "runs")
    with pytest.raises(OptimizeError, match="not an MLflow run id"): load_result("../../secrets", f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(SignatureError, match="outside"): signing.sign_artifacts(res.run_dir, ["../escape.json"])
    r = subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", "runs", "show", "../../etc/passwd", "--dir", str(root / "runs")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Fix:" in r.stderr
    assert sorted(p.name for p in (root / "runs").iterdir()) == before                       # nothing changed
    assert {"find_run", "load_result"} <= {e["action"] for e in _denied()}

# -- PII --------------------------------------------------------------------------------------------------------

CANARIES = ["canary.leak7@example.com", "+1 212 555 0147", "4111 1111 1111 1111", "536-22-8714", "203.0.113.77"]

def test_canary_pii_never_leaves_when_the_policy_is_redact(tmp_path, tmp_cache, capfd, caplog):
    from dspyopt_nb.engines.fake_server import FakeLMServer
    from dspyopt_nb.security.pii import PiiPolicy, guard_lm
    planted = [dspy.Example(review=f"{e.review} Contact {CANARIES[i % 5]} now.", sentiment=e.sentiment).with_inputs("review")
               for i, e in enumerate(SP.train)]
    prompts = []
    lm = scripted_lm(lambda p: (prompts.append(p), toy_sentiment(p))[1])
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = _opt(tmp_path / "runs" / "pii", trainset=planted, lm=lm, pii="redact", tracking=uri)
    assert res.status == "finished" and res.mlflow_run_id
    assert any("<EMAIL_ADDRESS>" in p for p in prompts)             # the data was there, redacted
    out, err = capfd.readouterr()
    # no canary in any artifact, event, MLflow store or artifact, log line, prompt, or the result itself
    blobs = [p.read_bytes() for p in _files(tmp_path)] + [out.encode(), err.encode(), caplog.text.encode(),
                                                          json.dumps(res.to_dict(), default=str).encode()] + [p.encode() for p in prompts]
    for c in CANARIES: assert not any(c.encode() in b for b in blobs), c
    # a remote LM (loopback OpenAI-compatible server) never receives it either, and the response carries none
    seen = []
    with FakeLMServer(answer=lambda p: (seen.append(p), toy_sentiment(p))[1]) as srv:
        guarded = guard_lm(srv.lm(), PiiPolicy("redact"))
        prog = res.load_program(TASK.program())
        with dspy.context(lm=guarded):
            pred = prog(review=f"Refund me at {CANARIES[0]}, card {CANARIES[2]}!")
    assert seen and not any(c in s for c in CANARIES for s in seen) and not any(c in str(pred) for c in CANARIES)
    with pytest.raises(ValueError, match="holds PII"):
        _opt(tmp_path / "runs" / "blocked", trainset=planted, pii="block")

# -- erasure ----------------------------------------------------------------------------------------------------

def test_erasure_removes_a_subject_everywhere_with_a_record(tmp_path, tmp_cache):
    from dspyopt_nb.security import erasure
    subject = "erase.me.please@example.org"
    data = tmp_path / "reviews.jsonl"
    rows = [dict(review=e.review + (f" -- from {subject}" if i < 6 else ""), sentiment=e.sentiment) for i, e in enumerate(SP.train)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [dspy.Example(**r).with_inputs("review") for r in rows]
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    res = _opt(tmp_path / "runs" / "er", trainset=train, tracking=uri)
    assert any(subject.encode() in p.read_bytes() for p in _files(tmp_path / "runs") if p.suffix != ".db")
    hooked = []
    erasure.register_erasure_hook("runtime_traces", lambda s: hooked.append(s) or 3)
    try: rec = erasure.erase_subject(subject, runs_root=tmp_path / "runs", jobs_dir=tmp_path / "jobs", datasets=[data], tracking_uri=uri)
    finally: erasure.ERASURE_HOOKS.pop("runtime_traces")
    assert rec.status == "done" and rec.counts["dataset_rows"] == 6 and rec.counts["mlflow_runs"] >= 1 and rec.counts["runtime_traces"] == 3
    assert hooked == [subject]
    assert not any(subject.encode() in p.read_bytes() for p in _files(tmp_path) if p.suffix != ".db")
    from dspyopt_nb.run.catalogue import mlflow_client
    from mlflow.entities import ViewType
    c = mlflow_client(uri)
    assert res.mlflow_run_id not in {r.info.run_id for r in c.search_runs([e.experiment_id for e in c.search_experiments(view_type=ViewType.ALL)], run_view_type=ViewType.ALL)}
    assert read_result(res.run_dir, verify="strict").run_id == res.run_id        # re-signed over the erased content
    recs = erasure.erasures()
    assert recs[0]["subject_digest"] == erasure.subject_digest(subject) and subject not in json.dumps(recs)
    assert audit.audit_entries(limit=1, action="erase")[0]["outcome"] == "ok"

# -- identities, tokens, audit: SQLite and PostgreSQL -------------------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store(request, tmp_path):
    if request.param == "sqlite": return f"sqlite:///{tmp_path}/store.db"
    base = request.getfixturevalue("postgres_url")
    from sqlalchemy import create_engine, text
    name = f"sec_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c: c.execute(text(f'create database "{name}"'))
    eng.dispose()
    return base.rsplit("/", 1)[0] + "/" + name

def test_tokens_roles_and_the_audit_chain(store):
    from fastapi import Depends, FastAPI, Request
    from fastapi.testclient import TestClient
    auth.add_identity("vera", "viewer", url=store); auth.add_identity("dan", "deployer", url=store)
    viewer, deployer = auth.issue_token("vera", url=store), auth.issue_token("dan", days=1, url=store)
    expired = auth.issue_token("dan", days=-0.001, url=store)
    app, live = FastAPI(), {"version": 1}
    @app.post("/promote")
    def promote(who: auth.Identity = Depends(auth.require("promote", url=store))):
        live["version"] += 1; return {"by": who.name}
    c = TestClient(app)
    H = lambda t: {"Authorization": f"Bearer {t}"}
    assert c.post("/promote", headers=H(viewer)).status_code == 403           # privilege escalation: a viewer promoting
    assert c.post("/promote").status_code == 401
    assert c.post("/promote", headers=H(expired)).status_code == 401
    assert c.post("/promote", headers=H("dso_" + "0" * 16 + "_guess")).status_code == 401
    assert c.post("/promote", headers=H("x" * 10000)).status_code == 401    # oversized, malformed
    assert live["version"] == 1                                              # nothing changed
    assert c.post("/promote", headers=H(deployer)).json() == {"by": "dan"} and live["version"] == 2
    # the serving runtime's hook (serve.app calls authorizer(request, action) before each endpoint)
    hook, rt = auth.http_authorizer(url=store), FastAPI()
    @rt.post("/v1/experiments/{exp}/stop")
    async def stop(request: Request, exp: str):
        who = await hook(request, "experiments.stop"); live["stopped"] = exp; return {"by": who.name}
    r = TestClient(rt)
    assert r.post("/v1/experiments/e1/stop", headers=H(viewer)).status_code == 403 and "stopped" not in live
    assert r.post("/v1/experiments/e1/stop", headers=H(deployer)).json() == {"by": "dan"} and live["stopped"] == "e1"
    auth.revoke_token(deployer, url=store)
    assert c.post("/promote", headers=H(deployer)).status_code == 401 and live["version"] == 2   # a replayed revoked token
    reasons = [e["detail"].get("reason") for e in _denied("login", store)]
    assert {"the token expired", "the token was revoked", "no bearer token", "unknown token or wrong secret", "the token is malformed"} <= set(reasons)
    assert [e["actor"] for e in _denied("promote", store)] == ["token:vera"]
    assert [e["actor"] for e in _denied("experiments.stop", store)] == ["token:vera"]
    # concurrent writers keep one chain
    errs = []
    def burst(i):
        try:
            for j in range(8): audit.record("view", "ok", actor=f"t{i}", target=str(j), url=store)
        except Exception as e: errs.append(e)
    ts = [threading.Thread(target=burst, args=(i,)) for i in range(6)]
    [t.start() for t in ts]; [t.join(120) for t in ts]
    r = audit.verify_audit(store)
    assert not errs and r.ok and r.entries >= 48, (errs, r)
    # an edit, a deletion and a reordering are each found, with where
    from sqlalchemy import delete, update
    from dspyopt_nb.security.tables import AuditRow
    from dspyopt_nb.store.db import session
    with session(store) as s: s.execute(update(AuditRow).where(AuditRow.seq == 3).values(outcome="allowed"))
    with session(store) as s: s.execute(delete(AuditRow).where(AuditRow.seq == 10))
    with session(store) as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 20).values(seq=-20)); s.execute(update(AuditRow).where(AuditRow.seq == 21).values(seq=20))
        s.execute(update(AuditRow).where(AuditRow.seq == -20).values(seq=21))
    r = audit.verify_audit(store)
    text = "\n".join(r.problems)
    assert not r.ok and "entry 3" in text and "edited" in text and "10..10 are missing" in text and "entry 20" in text and "reordered" in text
    cli = subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", "audit", "verify", "--db", store], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "entry 3" in cli.stdout

def test_cli_actions_are_authorized_and_audited(tmp_path):
    env = dict(os.environ, DSPYOPT_RUNS=str(tmp_path / "runs"))
    url = f"sqlite:///{tmp_path}/runs/dspyopt.db"
    run = lambda *a, **kw: subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", *a], capture_output=True, text=True, timeout=120, env={**env, **kw})
    assert run("access", "add", "vic", "viewer").returncode == 0                 # the local admin
    tok = run("access", "token", "vic", "--days", "1").stdout.strip()
    r = run("erase", "someone@example.com", DSPYOPT_TOKEN=tok)                  # a viewer erasing data
    assert r.returncode == 4 and "needs the admin role" in r.stderr
    r = run("keys", "rotate", DSPYOPT_TOKEN=tok)
    assert r.returncode == 4
    r = run("access", "list", DSPYOPT_AUTH="required")                           # no token where one is required
    assert r.returncode == 4 and "DSPYOPT_TOKEN" in r.stderr
    acts = {(e["action"], e["outcome"]) for e in audit.audit_entries(url)}
    assert {("erase", "denied"), ("rotate_keys", "denied"), ("login", "failed"), ("manage_identities", "ok")} <= acts
    from dspyopt_nb.jobs.runner import run_job
    with pytest.MonkeyPatch.context() as m:
        m.setenv("DSPYOPT_RUNS", str(tmp_path / "runs")); m.setenv("DSPYOPT_TOKEN", tok)
        with pytest.raises(auth.AccessDenied, match="may not run"):
            run_job(dict(name="j", task="sst2", lm="scripted:toy:toy_model", output_dir=str(tmp_path / "jobs")))
    assert not (tmp_path / "jobs").exists()                                      # refused before anything was made
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance(); shell.run_line_magic("load_ext", "dspyopt_nb.notebook.magics")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("DSPYOPT_RUNS", str(tmp_path / "runs")); m.setenv("DSPYOPT_TOKEN", tok)
        with pytest.raises(UsageError, match="may not run"): shell.run_line_magic("dspyopt", "run sst2 --optimizer none")
    assert [(e["action"], e["detail"]["via"]) for e in _denied(url=url)[:2]] == [("run", "magic"), ("run", "job")]
    assert not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]          # no run folder was made

# -- MLflow with its basic-auth app -------------------------------------------------------------------------------

@pytest.mark.slow
def test_mlflow_basic_auth_server(tmp_path, monkeypatch):
    port = free_port(); url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")   # a refusal is an answer, not a reason to retry with backoff
    (tmp_path / "auth.ini").write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path}/auth.db\n"
                                       "admin_username = admin\nadmin_password = s3cret-Admin-pw\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                                       "auth_cache_ttl_seconds = 300\n")   # MLflow's own cache of good logins: one slow hash per user, not per request
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret",
               LITELLM_LOCAL_MODEL_COST_MAP="True")   # offline: no retries fetching litellm's price table
    p = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
                          "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                          "--artifacts-destination", str(tmp_path / "artifacts")], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / "server.log", "w"))
    try:
        deadline = time.monotonic() + 240                  # the server imports a lot: slow on a busy 2-core machine
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200: break
            except Exception: time.sleep(0.5)
            if p.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
        t_up = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
        assert e.value.code == 401                                               # no credentials: refused
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin"); monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        from dspyopt_nb.run.catalogue import mlflow_client
        with pytest.raises(Exception, match="401|nauthorized|credentials"): mlflow_client(url).search_experiments()
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-Admin-pw")
        # a run's record through the tracker (a whole optimization is many requests: the tracker's record is the part that matters)
        from dspyopt_nb.run.result import OptimizationResult
        from dspyopt_nb.tracking.mlflow_tracker import MlflowTracker
        tracker = MlflowTracker(url, "auth-test", run_dir=tmp_path / "run")
        tracker.start("auth-run", params=dict(optimizer="none"))
        res = tracker.finish(OptimizationResult(run_id="auth-run", optimizer="none", preset="light", seed=0, lm="x",
                                                program_state={"demos": [{"review": "fine", "sentiment": "positive"}]},
                                                baseline_scores=[0, 1], optimized_scores=[1, 1]))
        assert res.mlflow_run_id and load_result(res.mlflow_run_id, url, verify="strict").run_id == "auth-run"   # signed, over HTTP
        from mlflow.server.auth.client import AuthServiceClient
        AuthServiceClient(url).create_user("reader", "r3ader-Pw-1234")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader"); monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "r3ader-Pw-1234")
        c = mlflow_client(url)
        assert c.get_run(res.mlflow_run_id).info.run_id == res.mlflow_run_id      # READ by default
        with pytest.raises(Exception, match="PERMISSION_DENIED|403|ermission"): c.set_tag(res.mlflow_run_id, "x", "y")
        print(f"mlflow basic-auth server: checks took {time.monotonic() - t_up:.1f} s after it started")
    finally:
        p.terminate()
        try: p.wait(30)
        except subprocess.TimeoutExpired: p.kill(); p.wait(30)

# -- compliance -----------------------------------------------------------------------------------------------------

def test_compliance_report_passes_when_configured_and_fails_with_evidence(tmp_path, tmp_cache, keyfile, monkeypatch):
    from dspyopt_nb.security.compliance import compliance_report
    root, url = tmp_path / "runs", f"sqlite:///{tmp_path}/store.db"
    monkeypatch.setenv("DSPYOPT_RUNS", str(root)); monkeypatch.setenv("DSPYOPT_DB_URL", url)
    monkeypatch.setenv("DSPYOPT_RETENTION_DAYS", "30")
    _opt(root / "c1", pii="redact")
    auth.add_identity("root", "admin", url=url); auth.issue_token("root", days=30, url=url)
    monkeypatch.setenv("DSPYOPT_AUTH", "required")
    settings = Path(__file__).parents[1] / "settings.ini"
    rep = compliance_report(root, url=url, settings=settings)
    assert rep.passed, repr(rep)
    assert all(c.controls and c.evidence for c in rep.checks)
    j, h = rep.write(tmp_path / "report")
    assert json.loads(j.read_text())["passed"] and "not a certification" in h.read_text()
    # break things: a tampered artifact, an edited audit entry, a PII dataset: the CLI exits 1 naming each
    (root / "c1" / "program.json").write_bytes((root / "c1" / "program.json").read_bytes() + b" ")
    (tmp_path / "users.jsonl").write_text('{"text": "reach me at bob.smith@example.com"}\n')
    from sqlalchemy import update
    from dspyopt_nb.security.tables import AuditRow
    from dspyopt_nb.store.db import session
    with session(url) as s: s.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="someone-else"))
    tok = auth.issue_token("root", days=1, url=url)
    r = subprocess.run([sys.executable, "-m", "dspyopt_nb.cli", "compliance", "--json", "--dataset", str(tmp_path / "users.jsonl"),
                        "--settings", str(settings)], capture_output=True, text=True, timeout=300, env=dict(os.environ, DSPYOPT_TOKEN=tok))
    assert r.returncode == 1, r.stderr[-2000:]
    failed = {c["id"] for c in json.loads(r.stdout)["checks"] if not c["passed"]}
    assert failed == {"signatures_valid", "audit_chain", "pii_scan"}, failed
