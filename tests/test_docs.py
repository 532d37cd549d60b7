"""The documentation site builds with `mkdocs build --strict`: a broken link or anchor, a
page missing from the nav, a public name missing from docs/api.md or a recipe key the
generated reference cannot describe fails the suite (skipped where MkDocs is not installed:
`pip install -e ".[dev]"`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is missing
            found = False
        if not found:
            missing.append(name)
    return missing


pytestmark = pytest.mark.skipif(
    bool(_missing()), reason=f"the docs need {', '.join(_missing())} "
    "(pip install -e '.[dev]' installs MkDocs, Material and mkdocstrings)")


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    """Neither -q nor -v: with either, MkDocs 1.6 lets warnings pass in strict mode
    (mkdocs/mkdocs#4126, #3991)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(root / "mkdocs.yml"), "-d", str(site)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_site_builds_strictly(tmp_path):
    built = _build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    reference = (tmp_path / "site" / "recipe-reference" / "index.html").read_text()
    for stage in ("prune", "decompose", "plan", "finetune", "export", "quantize"):
        assert f'id="{stage}"' in reference, stage
    assert "target_macs" in reference and "rank_map" in reference
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "compress.load_checkpoint" in api and "compress.register_stage" in api


def test_a_broken_link_or_a_page_left_out_of_the_nav_fails_the_build(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(REPO / "docs", root / "docs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "compress").symlink_to(REPO / "compress", target_is_directory=True)
    with open(root / "docs" / "index.md", "a") as index:
        index.write("\nSee [nothing](no-such-page.md).\n")
    (root / "docs" / "orphan.md").write_text("# Not in the nav\n")
    built = _build(root, tmp_path / "site")
    output = built.stdout + built.stderr
    assert built.returncode != 0, output
    assert "no-such-page.md" in output and "orphan.md" in output, output
