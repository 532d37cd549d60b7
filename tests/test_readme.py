"""The README's commands run as written, and its results at a glance are the results page's.

Every ```bash and ```python block of README.md is followed by a tag saying how it is checked:
`<!-- readme-check: no-data -->` blocks run here, in a copy of the repository's files with
no data folder beside it (as in a fresh clone); `data` blocks run in the `data` tier with
`path/to/trashnet` standing for the real images; `manual (why)` blocks (installs) are run by
.ci/run itself. A block without a tag fails the test, so none is left unchecked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BENCH_CUT_SHORT, REPO

README = REPO / "README.md"
RESULTS_PAGE = REPO / "docs" / "results.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```\n(?:<!-- readme-check: ([\w-]+)[^>]*-->)?", re.S)
DATA_PLACEHOLDER = "path/to/trashnet"


def readme_blocks(language: str) -> list[tuple[str, str | None]]:
    """(code, tag) of each block in `language`."""
    return [(code, tag) for lang, code, tag in BLOCK.findall(README.read_text())
            if lang == language]


def test_every_runnable_block_says_how_it_is_checked():
    blocks = readme_blocks("bash") + readme_blocks("python")
    assert blocks
    untagged = [code for code, tag in blocks if tag not in ("no-data", "data", "manual")]
    assert not untagged, f"README blocks without a readme-check tag: {untagged}"
    assert len(README.read_text().splitlines()) <= 300


def test_the_readme_recipe_loads_without_warnings(tmp_path, monkeypatch):
    import compress

    (recipe,) = [code for code, _ in readme_blocks("yaml")]
    monkeypatch.chdir(REPO)  # its checkpoint is named from the repository's root
    (tmp_path / "recipe.yaml").write_text(recipe)
    loaded = compress.load_recipe(tmp_path / "recipe.yaml")
    assert loaded.warnings() == []
    assert [next(iter(stage)) for stage in yaml.safe_load(recipe)["stages"]] == \
        ["prune", "finetune", "drop", "decompose", "finetune", "export"]


def fresh_copy(into: Path) -> Path:
    """The repository's tracked files (as a fresh clone has them), with nothing beside."""
    repo = into / "compress"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".git", "runs", "site"))
        return repo
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    return repo


def run_block(code: str, language: str, cwd: Path) -> str:
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else \
        [sys.executable, "-c", code]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{code}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_the_blocks_that_need_no_data_run_as_written_in_a_fresh_copy(tmp_path):
    """Each `compress run` with its stage-table timing cut to a few runs (--set after the
    README's own options): the blocks' outcome, not the timing's length, is checked."""
    repo = fresh_copy(tmp_path)
    assert not (repo.parent / "shared").exists()
    ran = 0
    for language in ("bash", "python"):
        for code, tag in readme_blocks(language):
            if tag == "no-data":
                if language == "bash":
                    code = "\n".join(line + " " + " ".join(BENCH_CUT_SHORT)
                                     if line.startswith("compress run ") else line
                                     for line in code.splitlines())
                output = run_block(code, language, repo)
                ran += 1
                assert "Traceback" not in output, output
    assert ran >= 2
    # The quickstart's run: every stage timed, the data stages skipped, as the README shows.
    records = sorted((repo / "runs" / "first" / "stages").glob("*/record.json"))
    assert [path.parent.name for path in records][:2] == ["00-input", "01-prune"]
    assert (repo / "runs" / "first" / "report.html").is_file()


def glance_table(text: str) -> list[str]:
    """The lines of the first table after the 'at a glance' heading."""
    section = re.split(r"^#+ .*at a glance\s*$", text, maxsplit=1, flags=re.M | re.I)[1]
    lines = section.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")),
               len(lines))
    return lines[start:end]


def glance_rows(text: str) -> list[list[str]]:
    """The table's rows after its header, links reduced to their text."""
    return [[re.sub(r"\]\([^)]*\)", "]", cell).strip() for cell in row.strip("|").split("|")]
            for row in glance_table(text)[2:]]


def test_the_results_at_a_glance_are_the_results_pages():
    readme, page = README.read_text(), RESULTS_PAGE.read_text()
    rows = glance_rows(readme)
    assert 1 <= len(rows) <= 5
    assert rows == glance_rows(page)
    # Each row links to its section of the results page, and that section exists.
    anchors = [re.fullmatch(r".*\]\(docs/results\.md#([\w-]+)\)\s*\|?", row.strip())
               for row in glance_table(readme)[2:]]
    assert all(anchors), glance_table(readme)
    headings = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", page, re.M)}
    assert {a.group(1) for a in anchors} <= headings
