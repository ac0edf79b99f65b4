"Test session set-up: isolated caches (DSPy's LM cache, dspyopt's runs), no progress bars; loopback servers shared by tests."
import contextlib, json, os, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

_tmp = Path(tempfile.mkdtemp(prefix="dspyopt-tests-"))
os.environ.setdefault("DSPY_CACHEDIR", str(_tmp / "dspy_cache"))   # read when dspy is imported: set it first
os.environ["DSPYOPT_NO_PROGRESS"] = "1"
os.environ["DSPYOPT_RUNS"] = str(_tmp / "runs")                    # the run catalogue of this test session
os.environ["DSPYOPT_KEYS"] = str(_tmp / "keys")                    # signing key, token pepper, audit key of this session
for _v in ("DSPYOPT_ENCRYPT", "DSPYOPT_KEK", "DSPYOPT_KEK_FILE", "DSPYOPT_KMS", "DSPYOPT_TOKEN", "DSPYOPT_AUTH", "DSPYOPT_VERIFY"):
    os.environ.pop(_v, None)                                       # a developer's security settings do not leak into tests
os.environ.pop("MLFLOW_TRACKING_URI", None)
# the embedded model is assembled once per machine, not per test session
os.environ.setdefault("DSPYOPT_CACHE", str(Path.home() / ".cache" / "dspyopt"))
sys.path.insert(0, str(Path(__file__).parent))

import pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs the embedded model or a real server (seconds to minutes)")

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "A fresh DSPy LM cache for one test (so a test can count real calls)."
    import dspy
    old = dspy.cache
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / "lm_cache"))
    yield tmp_path / "lm_cache"
    dspy.cache = old

@pytest.fixture(scope="session")
def postgres_url():
    "A throwaway PostgreSQL server on a loopback port for the whole test session (skipped where PostgreSQL is not installed)."
    from dspyopt_nb.store.postgres import PostgresNotFound, pg_bin, local_postgres
    try: pg_bin("initdb")
    except PostgresNotFound as e: pytest.skip(str(e))
    with local_postgres() as url: yield url

CHROMIUM = Path("/usr/bin/chromium")

@pytest.fixture
def chromium():
    """Pages of Debian's headless Chromium driven by Playwright (never a downloaded browser): `chromium(width, height)`
    opens one; the browser closes after the test. Skipped where Chromium or Playwright is missing."""
    if not CHROMIUM.exists(): pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                          "--disable-background-networking", "--allow-file-access-from-files"])
        try: yield lambda width=1400, height=1000: browser.new_page(viewport={"width": width, "height": height})
        finally: browser.close()


def free_port() -> int:
    "A free TCP port on 127.0.0.1."
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def write_notebook(path: Path, cells: list[str]):
    "A notebook of code cells (no outputs) at `path`."
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                                           "source": s} for i, s in enumerate(cells)],
                                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                                "nbformat": 4, "nbformat_minor": 5}))

@contextlib.contextmanager
def jupyter_lab(tmp_path: Path, root: Path, *, env: dict | None = None, args=(), ready: str = "/api/status"):
    """JupyterLab on loopback serving `root`, with its runtime, workspaces, config and settings under `tmp_path` (and no
    news pop-up); yields its URL once `ready` answers; stopped with its kernels at the end. `env` adds to the server's."""
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy_cache"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"), "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("DSPYOPT_NO_PROGRESS", None)                  # the browser tests watch the progress bars
    port, log_path = free_port(), tmp_path / "lab.log"
    log = open(log_path, "w")
    p = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                          "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
                          "--LabApp.expose_app_in_browser=True", *args] + (["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if p.poll() is not None: pytest.fail("jupyter lab exited:\n" + log_path.read_text()[-3000:])
            try:
                if urllib.request.urlopen(url + ready, timeout=2).status == 200: break
            except Exception: time.sleep(0.5)
        else: pytest.fail(f"jupyter lab did not answer {ready} in 90 s:\n" + log_path.read_text()[-3000:])
        yield url
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)               # the server shuts its kernels down on SIGTERM
            try: p.wait(20)
            except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait(10)
        log.close()
