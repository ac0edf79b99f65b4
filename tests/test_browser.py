"""End to end in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright, a notebook running
`%dspyopt run` on a bundled task with the scripted model. The progress bar advances, the result renders; a second run
is stopped with the dashboard's Stop button. Screenshots go to test-artifacts/ (git-ignored).

Needs Debian's chromium (apt-get install -y chromium) and `pip install playwright` (no `playwright install`)."""
import time
from pathlib import Path

import pytest

from conftest import CHROMIUM, jupyter_lab, write_notebook
HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "test-artifacts"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium")]
SIZES = "--n-train 30 --n-val 20 --n-test 60 --no-tracking"


def _notebook(path: Path):
    setup = (f"import sys, time\nsys.path.insert(0, {str(HERE)!r})\nfrom toy import toy_model\nfrom dspyopt_nb.engines.scripted import scripted_lm\n"
             "toy = scripted_lm(lambda p: (time.sleep(0.01), toy_model(p))[1], name='toy')\n"
             "slow = scripted_lm(lambda p: (time.sleep(0.1), toy_model(p))[1], name='slow')\n%load_ext dspyopt_nb.notebook.magics")
    cells = [setup, f"%dspyopt run sst2 --lm toy --optimizer bootstrap {SIZES} -o res",
             f"%dspyopt run sst2 --lm slow --optimizer bootstrap {SIZES} -o res2"]
    write_notebook(path, cells)


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on loopback, serving tmp_path; stopped (with its kernels) at the end."
    root = tmp_path / "root"; root.mkdir()
    _notebook(root / "dash.ipynb")
    with jupyter_lab(tmp_path, root, env={"DSPYOPT_CACHE": str(tmp_path / "dspyopt")}, args=["--ServerApp.disable_check_xsrf=True"]) as url:
        yield url


RUN_CELL = """async (i) => {
  const app = window.jupyterapp, nb = app.shell.currentWidget;
  nb.content.activeCellIndex = i;
  await app.commands.execute('notebook:run-cell');
}"""

KERNEL_READY = """async () => {
  const app = window.jupyterapp; if (!app) return false;
  const nb = app.shell.currentWidget; if (!nb || !nb.sessionContext) return false;
  await nb.sessionContext.ready;
  const k = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""


def _percent(dash) -> int | None:
    "The dashboard's progress from its label ('42% · optimizing'); None before it renders."
    t = dash.locator(".dspyopt-progress-text")
    if t.count() == 0: return None
    txt = t.first.inner_text().strip()
    return int(txt.split("%")[0]) if "%" in txt else None


def _wait(cond, timeout, what, page, poll=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v: return v
        page.wait_for_timeout(int(poll * 1000))
    page.screenshot(path=str(ARTIFACTS / "browser_timeout.png"), full_page=True)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (screenshot: test-artifacts/browser_timeout.png)")


def test_dashboard_in_jupyterlab(lab, chromium):
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium(1400, 1000)
    page.set_default_timeout(120_000)
    page.goto(f"{lab}/lab/tree/dash.ipynb")
    _wait(lambda: page.evaluate(KERNEL_READY), 120, "the notebook and an idle kernel", page, poll=0.5)
    page.evaluate(RUN_CELL, 0)                                   # imports, scripted models, %load_ext
    _wait(lambda: page.evaluate(KERNEL_READY), 120, "the set-up cell", page, poll=0.5)

    # 1. a run on the bundled task: the bar advances, the chart draws, the result renders
    page.evaluate(RUN_CELL, 1)
    first = page.locator(".dspyopt-dashboard").nth(0)
    seen = []
    def progressed():
        p = _percent(first)
        if p is not None and (not seen or seen[-1] != p): seen.append(p)
        return first.locator(".dspyopt-result").count() > 0
    _wait(progressed, 180, "the first run's result", page)
    # the label and the result are separate widgets: the browser may paint the result a frame before the label
    def at_100():
        progressed()
        return bool(seen) and seen[-1] == 100
    _wait(at_100, 15, "the progress label at 100%", page)
    assert len([p for p in seen if 0 < p < 100]) >= 2 and seen == sorted(seen) and seen[-1] == 100, seen
    _wait(lambda: first.locator(".dspyopt-status").inner_text() == "finished", 15, "the status 'finished'", page)
    assert "optimized" in first.locator(".dspyopt-result").inner_text()
    _wait(lambda: first.locator(".dspyopt-chart .vega-embed").count() > 0, 30, "the score chart", page)
    assert first.locator(".dspyopt-stop").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "browser_dashboard.png"), full_page=True)

    # 2. a second, slower run, stopped from the dashboard
    page.evaluate(RUN_CELL, 2)
    second = page.locator(".dspyopt-dashboard").nth(1)
    _wait(lambda: second.locator(".dspyopt-chart .vega-embed").count() > 0, 120, "the second run's baseline", page)
    assert 0 < (_percent(second) or 0) < 50
    second.locator(".dspyopt-stop").click()
    _wait(lambda: second.locator(".dspyopt-status").count() and second.locator(".dspyopt-status").inner_text() == "stopped",
          120, "the second run to stop", page)
    _wait(lambda: second.locator(".dspyopt-result").count() > 0, 120, "the stopped run's result", page)
    assert "stopped" in second.locator(".dspyopt-result").inner_text()
    _wait(lambda: _percent(second) == 100 and not second.locator(".dspyopt-resume").is_disabled(), 15,
          "the stopped run's bar at 100% and Resume enabled", page)
    assert "stopped on request" in second.locator(".dspyopt-title").inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser_stopped.png"), full_page=True)
