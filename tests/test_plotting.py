"""Figures are drawn through matplotlib's object API: importing compress and drawing leaves
the caller's backend (a notebook's inline one) and pyplot's figures alone."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

PROBE = """
import sys
import matplotlib
matplotlib.use("svg")
import compress
from compress.plotting import figure_file, new_figure, png_bytes
with figure_file(sys.argv[1]) as ax:
    ax.plot([0, 1], [1, 0])
figure = new_figure((3, 2))
figure.subplots().bar([0, 1], [2, 1])
assert png_bytes(figure).startswith(b"\\x89PNG")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_drawing_keeps_the_callers_backend_and_never_touches_pyplot(tmp_path):
    out = tmp_path / "figure.png"
    result = subprocess.run([sys.executable, "-c", PROBE, str(out)], capture_output=True,
                            text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["svg", "False"]
    assert out.read_bytes().startswith(b"\x89PNG")


def test_no_library_module_selects_a_backend_or_uses_pyplot():
    calls = ("matplotlib.use(", "import matplotlib.pyplot", "from matplotlib import pyplot")
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "compress").rglob("*.py")
                 if any(call in path.read_text() for call in calls)]
    assert offenders == []
