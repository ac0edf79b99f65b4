"Test session set-up: isolated caches (DSPy's LM cache, dspyopt's runs), no progress bars."
import os, sys, tempfile
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
