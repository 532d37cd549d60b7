"""The distribution as a user gets it: `python -m build` makes the sdist and, from it, the
wheel; the wheel installed into a folder runs `compress` from there, not from this checkout.

Nothing is downloaded: the build uses the installed setuptools (--no-isolation; it leaves
compress_vision.egg-info in the checkout, as `pip install -e .` does), and the installed copy
uses the dependencies this python already has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import BENCH_CUT_SHORT, REPO


def _python(*args: str, site: Path) -> subprocess.CompletedProcess:
    """Python in the repository root with only the installed copy importable: -P keeps the
    working folder (the checkout) off sys.path, and PYTHONPATH comes before site-packages,
    where an editable install of the checkout may also be."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-P", *args], cwd=REPO, env=env, check=False,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.processes
@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P needs Python 3.11+")
def test_the_wheel_installs_and_runs_the_no_data_recipe(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(REPO)], check=True, capture_output=True, text=True)
    wheel, = dist.glob("compress_vision-*.whl")
    assert len(list(dist.glob("compress_vision-*.tar.gz"))) == 1

    names = set(zipfile.ZipFile(wheel).namelist())
    subpackages = {p.parent.relative_to(REPO).as_posix()
                   for p in (REPO / "compress").glob("*/__init__.py")}
    assert subpackages >= {"compress/stages", "compress/pipeline", "compress/recipe"}
    missing = {f"{package}/__init__.py" for package in subpackages} - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)

    help_run = _python("-m", "compress", "--help", site=site)
    assert help_run.returncode == 0, help_run.stderr
    assert "run" in help_run.stdout and "search" in help_run.stdout

    # `python -m compress run ...`, printing first where the package was imported from.
    out = tmp_path / "run"
    smoke = _python("-c", "import compress, runpy; print(compress.__file__); "
                    "runpy.run_module('compress', run_name='__main__', alter_sys=True)",
                    "run", "recipes/smoke.yaml", "--set", "data.root=/nonexistent", "--out", str(out),
                    *BENCH_CUT_SHORT, site=site)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    imported_from = Path(smoke.stdout.splitlines()[0])
    assert imported_from == site / "compress" / "__init__.py"
    report = json.loads((out / "report.json").read_text())
    assert len(report["stages"]) == 5 and report["stages"][-1]["macs"] > 0
