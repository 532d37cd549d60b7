"""report.html: written by every run, rewritten or compared across runs by `compress report`;
self-contained (plots embedded, nothing fetched); rendered in a real headless browser where
one is installed (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import TINY_CLASSES, assert_user_error, run_cli, tiny_spec, write_tiny_recipe

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.models import build_model

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Appended to a copy of the page: once it has loaded, the body says whether each image decoded.
IMAGE_PROBE = ("<script>window.addEventListener('load', () => document.body.setAttribute("
               "'data-images', [...document.images].map(i => i.complete && i.naturalWidth > 0 "
               "? 'ok' : 'broken').join(',')));</script>")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_data):
    """Two finished runs of a tiny checkpoint: one pruned and exported with its final model
    compared across runtimes, one exported without."""
    folder = tmp_path_factory.mktemp("html")
    checkpoint = save_checkpoint(folder / "tiny.safetensors", Checkpoint(
        build_model(tiny_spec()).eval(), tiny_spec(), TINY_CLASSES, 32))
    runs = []
    for name, stages, compared in (
            ("pruned", [{"prune": {"ratio": 0.25}}, {"export": {"fp16": True}}], True),
            ("plain", [{"export": {}}], False)):
        recipe = write_tiny_recipe(folder / f"{name}.yaml", checkpoint, tiny_data, stages,
                                   bench={"batch_sizes": [1], "warmup": 0, "runs": 3,
                                          "compare_runtimes": compared})
        code, output = run_cli(["run", recipe, "--out", folder / name])
        assert code == 0, output
        runs.append(folder / name)
    return runs


def _images(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', page)


def test_every_run_writes_a_self_contained_page(two_runs):
    page = (two_runs[0] / "report.html").read_text()
    for stage in ("0:input", "1:prune", "2:export"):
        assert f"<td>{stage}</td>" in page
    assert "Channels per layer, stage 1:prune" in page  # the pruned widths, plotted
    assert "Parity checks" in page and "fp16" in page
    assert "The final model in each runtime" in page and "ONNX Runtime (CPU)" in page
    assert "<h3>Device</h3>" in page
    sources = _images(page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch
    uncompared = json.loads((two_runs[1] / "report.json").read_text())
    assert uncompared["runtimes"] is None  # bench.compare_runtimes: false
    assert "The final model in each runtime" not in (two_runs[1] / "report.html").read_text()


def test_report_compares_runs_in_one_page(tmp_path, two_runs):
    out = tmp_path / "both.html"
    code, output = run_cli(["report", *two_runs, "--out", out])
    assert code == 0, output
    page = out.read_text()
    assert "<h2>pruned</h2>" in page and "<h2>plain</h2>" in page
    assert page.count("<h3>Stages</h3>") == 2


def test_report_of_an_interrupted_run_shows_its_finished_stages(tmp_path, two_runs):
    run = tmp_path / "cut"
    shutil.copytree(two_runs[0], run)
    (run / "report.json").unlink()
    shutil.rmtree(next(run.glob("stages/02-*")))
    code, output = run_cli(["report", run])
    assert code == 0, output
    page = (run / "report.html").read_text()
    assert "<td>1:prune</td>" in page and "<td>2:export</td>" not in page
    assert "not finished" in page


def test_bad_report_requests_are_one_error_line(tmp_path, two_runs):
    assert_user_error(["report", tmp_path / "nowhere"], "no such run folder")
    (tmp_path / "empty").mkdir()
    assert_user_error(["report", tmp_path / "empty"], "no finished stage")
    kept = tmp_path / "kept.html"
    kept.write_text("an earlier page")
    assert_user_error(["report", two_runs[0], tmp_path / "empty", "--out", kept],
                      "no finished stage")
    assert kept.read_text() == "an earlier page"  # nothing already written is lost
    assert_user_error(["report", two_runs[0], "--out", tmp_path / "page.png"],
                      "give an .html file")


def test_the_page_renders_in_a_headless_browser(tmp_path, two_runs):
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's); the page was "
                    "not rendered in a browser")
    out = tmp_path / "both.html"
    assert run_cli(["report", *two_runs, "--out", out])[0] == 0
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", probed.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, f"the page did not load in {browser}: {dom[:300]!r}"
    assert found.group(1).split(",") == ["ok"] * len(_images(out.read_text()))
    assert dom.count("<h3>Stages</h3>") == 2  # the browser parsed the whole page
