"""Deployment: the image's files (Dockerfile, entrypoint, compose) and the CI workflows linted and checked, every
Kubernetes overlay rendered, validated and held to the policies, the monitoring files checked against the metrics the
code exports, the entrypoint's modes run for real, and the whole stack (PostgreSQL, MLflow with basic-auth, the runtime,
the scheduler) started on loopback, served, fed back, scraped and stopped."""
import json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

from dspyopt_nb.deploy import k8s
from dspyopt_nb.deploy.monitoring import metric_names, monitoring_problems, used_metric_names
from dspyopt_nb.deploy.stack import Stack, entrypoint, free_port, register_demo, scrape, smoke

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPTED = "scripted:dspyopt_nb.engines.scripted:toy_sentiment"

def tool(name: str) -> str:
    p = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not p: pytest.fail(f"{name} is not installed. Fix: make install (it is in settings.ini's dev_requirements).")
    return p

def run(*cmd, env=None, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}, **kw)

# -- the image ----------------------------------------------------------------------------------------------------

def test_dockerfile_and_scripts_lint_clean():
    r = run(tool("hadolint"), "deploy/Dockerfile"); assert r.returncode == 0, r.stdout + r.stderr
    r = run(tool("shellcheck"), "deploy/entrypoint.sh", *map(str, (ROOT / "deploy/ci").glob("*.sh"))); assert r.returncode == 0, r.stdout
    bad = ROOT / "deploy" / "Dockerfile.bad-test"
    try:   # the linter bites: an unpinned base image and a root user are reported
        bad.write_text("FROM python:latest\nUSER root\nRUN pip install flask\n")
        r = run(tool("hadolint"), str(bad))
        assert r.returncode != 0 and "DL3007" in r.stdout and "DL3002" in r.stdout, r.stdout
    finally: bad.unlink()

def test_dockerfile_shape():
    text = (ROOT / "deploy/Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert stages == ["labextension", "build", "runtime"], stages
    final = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001", final, re.M) and "HEALTHCHECK" in final and "build-essential" not in final
    assert "-c deploy/constraints.txt" in text and "local_model_path()" in text      # tested pins; the model assembled inside

def test_image_pins_agree_with_settings():
    r = run(sys.executable, "deploy/lock.py", "--check"); assert r.returncode == 0, r.stdout

def test_compose_secrets_from_the_environment_only():
    c = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    modes = set(re.findall(r"^  ([a-z|-]+)\)", entrypoint().read_text(), re.M))
    modes = {m for ms in modes for m in ms.split("|")}
    for name, s in c["services"].items():
        img = s.get("image", "")
        assert ":" in img and not img.endswith(":latest"), f"{name}: image {img!r} is not pinned"
        if "command" in s and name != "postgres": assert s["command"][0] in modes, f"{name}: no entrypoint mode {s['command'][0]}"
        for k, v in (s.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEK", k) or re.search(r"://[^/]*:[^/]*@", str(v)):
                assert "${" in str(v), f"{name}: {k} is written in the file; take it from the environment"
        for p in s.get("ports", []): assert p.startswith("127.0.0.1:"), f"{name}: port {p} is published beyond loopback"
    example = dict(l.split("=", 1) for l in (ROOT / "deploy/.env.example").read_text().splitlines() if "=" in l and not l.startswith("#"))
    assert all(not v.strip() for k, v in example.items() if re.search(r"PASSWORD|SECRET|TOKEN|KEK", k)), example   # placeholders only
    assert "deploy/.env" in (ROOT / ".gitignore").read_text()

def test_compose_and_workflows_match_their_schemas(tmp_path):
    "compose.yaml against the Compose Specification, the workflows against GitHub's schema (check-jsonschema's copies)."
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml"); assert r.returncode == 0, r.stdout
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, (ROOT / ".github/workflows").glob("*.yaml")))
    assert r.returncode == 0, r.stdout
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  runtime:\n    image: x:1\n    portz: [\"8000:8000\"]\n")
    assert run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)).returncode != 0

def test_entrypoint_modes_refuse_with_a_fix(tmp_path):
    env = dict(DSPYOPT_STATE_DIR=str(tmp_path), MLFLOW_BACKEND_STORE_URI="")
    r = run(str(entrypoint()), "job", env=env); assert r.returncode == 2 and "Fix:" in r.stderr, r.stderr
    r = run(str(entrypoint()), "mlflow", env=env); assert r.returncode == 2 and "MLFLOW_BACKEND_STORE_URI" in r.stderr, r.stderr
    r = run(str(entrypoint()), "mlflow", env=dict(env, MLFLOW_BACKEND_STORE_URI="sqlite:///x.db", MLFLOW_AUTH_ADMIN_USERNAME="a"))
    assert r.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in r.stderr, r.stderr
    r = run(str(entrypoint()), "health", env=env); assert r.returncode == 0          # nothing served in this container yet
    r = run(str(entrypoint()), "help"); assert "serve" in r.stdout and "learner" in r.stdout

def test_entrypoint_migrate_and_exporter(tmp_path):
    "`migrate` upgrades a store; `exporter` serves job outcomes as metrics and `health` sees it; SIGTERM stops it."
    db = f"sqlite:///{tmp_path}/store.db"
    r = run(str(entrypoint()), "migrate", env=dict(DSPYOPT_DB_URL=db, DSPYOPT_STATE_DIR=str(tmp_path)))
    assert r.returncode == 0 and "at" in r.stdout, r.stderr
    from dspyopt_nb.store.db import schema_drift
    assert schema_drift(db) == []
    from dspyopt_nb.jobs.runner import JobRecord
    d = tmp_path / "jobs" / "nightly" / "r1"; d.mkdir(parents=True)
    JobRecord(id="r1", name="nightly", status="failed", started=10.0, finished=20.0, job_dir=str(d)).save()
    from dspyopt_nb.learn.models import Alarm
    from dspyopt_nb.store.db import session
    with session(db) as s:  # what a learner leaves: an open drift alarm
        s.add(Alarm(key="sst2:1", program="sst2", version="1", detector="ddm", signal="performance", at=1, effect_size=0.2, event="{}",
                    status="open", created=1.0))
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DSPYOPT_EXPORTER_PORT": str(port), "DSPYOPT_STATE_DIR": str(tmp_path),
           "DSPYOPT_DB_URL": db,
           "DSPYOPT_JOBS_DIR": str(tmp_path / "jobs"), "DSPYOPT_RUNS": str(tmp_path / "runs")}
    p = subprocess.Popen([str(entrypoint()), "exporter"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, m = time.monotonic() + 60, None
        while m is None:
            assert p.poll() is None and time.monotonic() < deadline, p.stdout.read().decode()
            try: m = scrape(f"http://127.0.0.1:{port}")
            except Exception: time.sleep(0.3)
        assert run(str(entrypoint()), "health", env=env).returncode == 0                     # the healthcheck finds it too
        assert m['dspyopt_job_runs{job="nightly",status="failed"}'] == 1.0
        assert m['dspyopt_job_last_finished_timestamp_seconds{job="nightly",status="failed"}'] == 20.0
        assert m['dspyopt_drift_alarms{program="sst2",signal="performance",status="open"}'] == 1.0
    finally:
        os.killpg(p.pid, signal.SIGTERM); assert p.wait(20) == 0

# -- Kubernetes ---------------------------------------------------------------------------------------------------

OVERLAYS = sorted(p for p in (ROOT / "deploy/k8s/overlays").iterdir() if p.is_dir()) + [ROOT / "deploy/k8s/ci"]

@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_validates_and_keeps_the_policies(overlay):
    docs = k8s.render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "CronJob", "NetworkPolicy", "RayCluster", "RayJob"} <= kinds
    assert "Secret" not in kinds
    assert k8s.validate(docs) == [] and k8s.policy_problems(docs) == []
    ns = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert len(ns) == 1 and None not in ns, ns
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for d in docs for _, pod in k8s._pod_specs(d)
            for c in pod["containers"] + pod.get("initContainers", []) for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert "dspyopt-secrets" in refs

def test_overlays_differ_where_they_should():
    get = lambda o, kind, name: next(d for d in k8s.render(ROOT / "deploy/k8s/overlays" / o) if d["kind"] == kind and d["metadata"]["name"] == name)
    assert [get(o, "HorizontalPodAutoscaler", "runtime")["spec"]["minReplicas"] for o in ("dev", "staging", "prod")] == [1, 2, 3]
    assert [get(o, "RayCluster", "dspyopt-ray")["spec"]["workerGroupSpecs"][0]["maxReplicas"] for o in ("dev", "staging", "prod")] == [1, 8, 32]

def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: [{name: x}]\n")
    with pytest.raises(k8s.KustomizeError, match="configMapGenerator.*Fix"): k8s.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [../../nowhere.yaml]\n")
    with pytest.raises(FileNotFoundError): k8s.render(tmp_path)

def test_schema_validation_bites():
    docs = k8s.render(ROOT / "deploy/k8s/overlays/dev")
    rt = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "runtime")
    rt["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    ray = next(d for d in docs if d["kind"] == "RayCluster")
    ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"many": 1}
    probs = k8s.validate([rt, ray], ("1.37.0",))
    assert any("pathh" in p for p in probs) and any("RayCluster" in p and "workerGroupSpecs" in p for p in probs), probs

# -- CI workflows -------------------------------------------------------------------------------------------------

def test_workflows():
    wf = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / ".github/workflows").glob("*.yaml")}
    assert {"test", "docs", "image", "staging", "pages", "benchmarks"} <= set(wf)
    for name, w in wf.items():
        assert w.get(True) or w.get("on"), f"{name}: no trigger"          # YAML reads a bare `on:` as True
        for j, job in w["jobs"].items(): assert job.get("runs-on") and job.get("steps"), f"{name}.{j}"
    runs = lambda n: "\n".join(s.get("run", "") for j in wf[n]["jobs"].values() for s in j["steps"])
    uses = lambda n: [s.get("uses", "") for j in wf[n]["jobs"].values() for s in j["steps"]]
    assert "make test" in (ROOT / ".ci/run").read_text() and ".ci/run" in runs("test")
    assert "deploy/ci/container-smoke.sh" in runs("image") and any(u.startswith("docker/login-action") for u in uses("image"))
    assert "smoke" in runs("staging") and "compare" in runs("staging") and any(u.startswith("helm/kind-action") for u in uses("staging"))
    assert any(u.startswith("actions/deploy-pages") for u in uses("pages"))
    assert any(u.startswith("actions/upload-artifact") for u in uses("benchmarks"))
    r = run(tool("actionlint")); assert r.returncode == 0, r.stdout

# -- monitoring -----------------------------------------------------------------------------------------------------

def test_dashboard_and_alerts_use_exported_metrics_and_parse():
    import promql_parser
    if not (ROOT / "dspyopt_nb/serve/app.py").exists(): pytest.skip("the runtime (dspyopt_nb.serve, issue-serve) is not in this tree")
    assert monitoring_problems() == []
    dash = json.loads((ROOT / "deploy/monitoring/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"]) >= 10
    rules = yaml.safe_load((ROOT / "deploy/monitoring/alerts.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    for a in alerts: assert a["labels"]["severity"] in ("page", "warn") and a["annotations"]["summary"], a["alert"]
    for e in exprs + [a["expr"] for a in alerts]:
        promql_parser.parse(e.replace("$__rate_interval", "5m").replace("$program", ".*"))
    used = used_metric_names(json.dumps(dash) + json.dumps(rules))
    for m in ("dspyopt_predictions_total", "dspyopt_program_latency_seconds_bucket", "dspyopt_feedback_total", "dspyopt_rollout_decisions_total", "dspyopt_job_last_finished_timestamp_seconds", "dspyopt_optimization_cost_usd_total",
              "dspyopt_tokens_total", "dspyopt_serving_cost_usd_total", "dspyopt_experiment_allocation", "dspyopt_drift_alarms"):
        assert m in used, m
    assert "dspyopt_nope_total" not in metric_names()

# -- the stack on loopback -----------------------------------------------------------------------------------------

def _need_postgres():
    from dspyopt_nb.store.postgres import PostgresNotFound, pg_bin
    try: pg_bin("initdb")
    except PostgresNotFound as e: pytest.skip(str(e))

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stack_serves_takes_feedback_exports_metrics_and_stops(tmp_path):
    "PostgreSQL, MLflow, the runtime and the scheduler by the image's entrypoint; a registered program served; metrics move."
    _need_postgres()
    if not (ROOT / "dspyopt_nb/serve/app.py").exists(): pytest.skip("the runtime (dspyopt_nb.serve, issue-serve) is not in this tree")
    stack = Stack(tmp_path / "stack", lm=SCRIPTED, auth=False, timeout_s=300)
    with stack:
        version = register_demo(stack.mlflow_url, env=stack.client_env())
        out = smoke(stack.runtime_url, n=4)
        again = smoke(stack.runtime_url, n=2)
        assert stack.procs["scheduler"].poll() is None and "postgresql" in stack.db_url
    moved = out["moved"]
    assert moved[f'dspyopt_predictions_total{{outcome="ok",program="sst2",variant="",version="{version}"}}'] == 4
    assert moved['dspyopt_program_latency_seconds_count{program="sst2"}'] == 4
    assert moved['dspyopt_tokens_total{kind="prompt",program="sst2"}'] > 0 and moved['dspyopt_tokens_total{kind="completion",program="sst2"}'] > 0
    assert moved['dspyopt_feedback_total{outcome="ok"}'] == 4 and again["moved"]['dspyopt_feedback_total{outcome="ok"}'] == 2
    assert {p["outputs"]["sentiment"] for p in out["predictions"]} == {"positive"}
    assert all(p.poll() is not None for p in stack.procs.values())                            # every process stopped
    for port in stack.ports.values():
        import socket
        with socket.socket() as s: assert s.connect_ex(("127.0.0.1", port)) != 0                 # and its port is closed
    log = (tmp_path / "stack/logs/runtime.log").read_text()
    assert "Traceback" not in log, log[-2000:]
    lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]                    # JSON logs, one per request
    logged = {l.get("request_id") for l in lines if l.get("path") == "/v1/programs/sst2/predict" and l["status"] == 200}
    assert {p["request_id"] for p in out["predictions"]} <= logged, lines[-5:]
    assert any(l.get("path") == "/v1/feedback" and l.get("request_id") == out["predictions"][0]["request_id"] for l in lines)

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlflow_basic_auth_by_the_entrypoint(tmp_path):
    "The entrypoint's mlflow mode with basic-auth from the environment: no credentials 401, the admin's accepted."
    import urllib.error, urllib.request
    with Stack(tmp_path / "stack", services=["mlflow"], auth=True, timeout_s=240) as stack:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=20)
        assert e.value.code == 401
        import base64
        def get(host=None):   # a new Request each time: urllib keeps the first Host it set over any added later
            req = urllib.request.Request(stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1")
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{stack.username}:{stack.password}".encode()).decode())
            if host: req.add_header("Host", host)
            return urllib.request.urlopen(req, timeout=60).status
        assert get() == 200
        assert get("mlflow:5000") == 200                                                        # as compose and Kubernetes reach it
        with pytest.raises(urllib.error.HTTPError) as e: get("rebinding.example:5000")            # an unknown Host header is refused
        assert e.value.code == 403
        ini = next((tmp_path / "stack/state/mlflow").glob("*.ini"))
        assert oct(ini.stat().st_mode & 0o777) == "0o600"                                      # the password only there, owner-only
        assert stack.password not in (tmp_path / "stack/logs/mlflow.log").read_text()

# -- operations: a tested restore -----------------------------------------------------------------------------------

def test_postgres_backup_restores_the_rows(postgres_url, tmp_path):
    "pg_dump of a store, a table dropped, pg_restore: the rows and the migration state are back."
    from sqlalchemy import text
    from dspyopt_nb.deploy.ops import pg_backup, pg_restore_to
    from dspyopt_nb.store.db import get_engine, migrate
    heads = migrate(postgres_url)
    with get_engine(postgres_url).begin() as c:
        c.execute(text("create table deploy_backup_test (id serial primary key, body text)"))
        c.execute(text("insert into deploy_backup_test (body) values ('kept'), ('also kept')"))
    dump = pg_backup(postgres_url, tmp_path / "store.dump")
    try:
        with get_engine(postgres_url).begin() as c: c.execute(text("drop table deploy_backup_test"))
        pg_restore_to(dump, postgres_url)
        with get_engine(postgres_url).connect() as c:
            assert [r[0] for r in c.execute(text("select body from deploy_backup_test order by id"))] == ["kept", "also kept"]
            assert sorted(r[0] for r in c.execute(text("select version_num from alembic_version"))) == sorted(heads)
    finally:
        with get_engine(postgres_url).begin() as c: c.execute(text("drop table if exists deploy_backup_test"))
