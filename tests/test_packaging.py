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
