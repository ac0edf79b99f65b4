"""The docs site, built offline from the outputs stored in the lessons (as `make site` does; `make docs` executes
them first): every page written, no broken internal link, executed output on every lesson page, no directive or
hidden cell on a page, no machine path stored; then read in Chromium: the home page and two lessons (screenshots in
test-artifacts/), search answering, the dashboard's widgets and a chart drawn from their saved state."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
from conftest import CHROMIUM
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from dspyopt_nb.docs.process import process_site
    from dspyopt_nb.docs.render import render_site
    tmp = tmp_path_factory.mktemp("docs")
    s = process_site(REPO / "nbs", tmp / "proc")
    render_site(s, tmp / "site")
    return s, tmp / "site"


def test_site_builds_and_checks(site):
    from dspyopt_nb.docs.check import check_site, page_text
    s, out = site
    problems = check_site(out, s)
    assert not problems, "\n".join(problems)
    sections = [sec for sec, _ in s.sections()]
    assert {"Engines", "Run", "Optimizers", "Notebook", "Jobs", "Docs"} <= set(sections), sections  # a sidebar by layer
    home = (out / "index.html").read_text()
    assert "make demo" in home and 'class="sidebar"' in home  # the README is the home page
    api = (out / "api.html").read_text()
    assert "list_runs" in api and "run/catalogue" not in api.replace("10_run/catalogue", "")
    stats = (out / "07_stats" / "stats.html").read_text()
    assert "def compare_paired(" in page_text(stats)  # signatures and docstrings from show_doc
    index = json.loads((out / "search.json").read_text())
    assert len(index) > 100 and any("paired" in e["text"] for e in index)
    assert (out / "downloads" / "10_run" / "08_optimize.ipynb").exists() and "08_optimize.ipynb" in (out / "gallery.html").read_text()


def test_site_in_chromium(site, chromium):
    s, out = site
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium(1400, 1000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for path, shot in (("index.html", "docs_home.png"), ("07_stats/stats.html", "docs_stats.png"),
                       ("30_notebook/dashboard.html", "docs_dashboard.png")):
        page.goto((out / path).as_uri())
        page.wait_for_load_state("load")
        assert page.locator("h1.title").inner_text().strip(), path
        assert page.locator(".sidebar a.active").count() == 1, path
        if path.endswith("dashboard.html"):  # widgets from their saved state, and the chart inside them
            page.locator(".widget-html, .jupyter-widgets").first.wait_for(timeout=20_000)
            page.locator(".vega-embed").first.wait_for(timeout=20_000)
            page.locator(".widget-html, .jupyter-widgets").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / shot))
    page.goto((out / "90_insights" / "trends.html").as_uri())  # Altair charts, interactive, with the site's own Vega
    page.locator(".vega-embed").first.wait_for(timeout=20_000)
    assert page.locator(".vega-embed").count() >= 2
    page.fill("#search", "paired bootstrap")  # search, with no server
    page.locator("#search-results a").first.wait_for(timeout=10_000)
    assert page.locator("#search-results a").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "docs_search.png"))
    assert not errors, errors
