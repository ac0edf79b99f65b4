"""The JupyterLab extension ships in the package: a wheel holds the prebuilt labextension under
share/jupyter/labextensions/dspyopt and the file that enables the server extension under etc/jupyter, so installing
dspyopt enables both with no extra command (an editable install gets the same two from `make`, which links them)."""
import json, subprocess, sys, zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
BUILT = REPO / "dspyopt_nb" / "labextension"


@pytest.mark.skipif(not (BUILT / "package.json").exists(), reason="the labextension is not built: make labextension")
def test_wheel_ships_and_enables_the_extension(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                        str(REPO)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    whl = next(tmp_path.glob("dspyopt_nb-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/"
    ext = data + "share/jupyter/labextensions/dspyopt/"
    assert ext + "package.json" in names and ext + "install.json" in names and ext + "schemas/dspyopt/plugin.json" in names
    assert any(n.startswith(ext + "static/remoteEntry.") for n in names)
    cfg = json.loads(zipfile.ZipFile(whl).read(data + "etc/jupyter/jupyter_server_config.d/dspyopt_nb.json"))
    assert cfg["ServerApp"]["jpserver_extensions"] == {"dspyopt_nb.notebook.server": True}
    pkg = json.loads(zipfile.ZipFile(whl).read(ext + "package.json"))
    assert pkg["name"] == "dspyopt" and pkg["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")


def test_server_extension_imports_without_dspy():
    "Jupyter loads the server extension at every start: loading it must not import DSPy (seconds, for a panel never opened)."
    code = ("import sys; import dspyopt_nb.notebook.server as s; "
            "print(s._jupyter_server_extension_points()[0]['module'], 'dspy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stdout.split() == ["dspyopt_nb.notebook.server", "False"], out.stdout + out.stderr


def _imports(src: str) -> set[str]:
    import ast
    try: tree = ast.parse(src)
    except SyntaxError: return set()
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0: out.add(n.module.split(".")[0])
    return out


def test_every_import_is_declared():
    """A module the package or a lesson imports comes from a distribution that settings.ini declares or that a declared
    one pulls in: an import that only the developer's virtualenv satisfies fails CI's fresh clone (river once did)."""
    import configparser, shlex
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(REPO / "settings.ini")
    keys = ("requirements", "dev_requirements", "torch_requirements")
    todo = [Requirement(r) for k in keys for r in shlex.split(cfg["DEFAULT"][k])]
    closure: set[str] = set()
    while todo:
        r = todo.pop(); name = canonicalize_name(r.name)
        if name in closure: continue
        closure.add(name)
        try: deps = metadata.requires(r.name) or []
        except metadata.PackageNotFoundError: continue
        for d in map(Requirement, deps):
            if d.marker is None or d.marker.evaluate({"extra": e} if (e := next(iter(r.extras), "")) else {"extra": ""}):
                todo.append(d)
    srcs = [p.read_text() for d in ("dspyopt_nb", "tests") for p in (REPO / d).rglob("*.py")]
    for nb in (REPO / "nbs").rglob("*.ipynb"):
        srcs += ["\n".join(l for l in "".join(c["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
                 for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    mods = set().union(*map(_imports, srcs)) - set(sys.stdlib_module_names)
    dists = metadata.packages_distributions()
    optional = {"uvloop"}  # used when installed (dspyopt serve), never required
    undeclared = {m: dists[m] for m in mods - optional if m in dists and m != "dspyopt_nb"
                  and not {canonicalize_name(d) for d in dists[m]} & closure}
    assert not undeclared, f"imported but not declared in settings.ini (add to requirements): {undeclared}"
