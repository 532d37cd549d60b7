"""Every key of every shipped recipe, search file and data YAML, set to a value of another
type (a string, a list, a mapping, a number), is refused in one `error:` line that names
the key, with exit code 2, no traceback and nothing written; only the data root that
`--data` replaces, a number where null stood (a Conv's padding), and a fixed number where a
search space draws numbers, are accepted.
Null (an optional key, `- export:` for a stage's defaults) is accepted or refused in one
line. Files given to the command that does not read them say which command does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, TINY_CLASSES

from compress.checkpoint import load_checkpoint
from compress.cli import main

SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's where PyYAML has it
WRONG_VALUES = ("a string", [1], {"k": 1}, 7, None)
REPLACED_BY_DATA_OPTION = {("data", "root"), ("DATA_PATH",)}


class Accepted(Exception):
    """Raised where the command would start its work: the file passed every check."""


def _stop(*args, **kwargs):
    raise Accepted()


def _kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value) if value is None else "bool"
    return {int: "number", float: "number", str: "string", list: "list",
            dict: "mapping"}.get(type(value), type(value).__name__)


def _paths(node: Any, prefix: tuple = ()):
    """Every key path in a parsed YAML file (list items by index), outermost first."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,), value
        yield from _paths(value, prefix + (key,))


def _name(path: tuple) -> str:
    """How an error line names a key path: its last key (a list item with its list's key,
    as `stages.0`)."""
    return ".".join(map(str, path[-2:])) if isinstance(path[-1], int) else str(path[-1])


def _named(path: tuple) -> tuple[str, ...]:
    """What an error line may name for a key path: the key, or a key up to two above it
    where that takes a choice of forms (`input_size: {choices: [...]}` or a fixed size:
    `input_size.choices.0` is named as input_size)."""
    return tuple(_name(path[:end]) for end in range(len(path), max(len(path) - 3, 0), -1))


def _fixed_number_for_a_range(original: Any, value: Any) -> bool:
    """A search space takes a fixed number where it searched numbers ({choices: [...]} or
    {low:, high:})."""
    if not (isinstance(original, dict) and isinstance(value, (int, float))):
        return False
    drawn = original.get("choices", [original.get("low"), original.get("high")])
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in drawn)


def _mutated(raw: Any, path: tuple, value: Any) -> Any:
    mutated = copy.deepcopy(raw)
    node = mutated
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return mutated


def _command(kind: str, file: Path, out: Path, data: Path) -> list[str]:
    return {
        "recipe": ["run", file, "--out", out, "--data", data],
        "search": ["search", file, "--trials", "1", "--out", out, "--data", data],
        "arch": ["arch-search", file, "--trials", "1", "--out", out, "--data", data],
        "data": ["train", "--model", "mobilenet_v3_small", "--data", file, "--out", out,
                 "--data-root", data],
    }[kind]


def _shipped() -> list:
    """(kind, file) of every shipped file; the search files take 20 s each (every null
    accepted checks the whole space), so they are `slow`."""
    files = []
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        kind = "arch" if "architecture" in raw else "search" if "search" in raw else "recipe"
        files.append(pytest.param(kind, path, id=f"{kind}-{path.name}",
                                  marks=[pytest.mark.slow] if kind != "recipe" else []))
    return files + [pytest.param("data", path, id=f"data-{path.name}")
                    for path in sorted((REPO / "recipes" / "data").glob("*.yaml"))]


@pytest.mark.parametrize("kind, shipped", _shipped())
def test_a_value_of_another_type_is_one_error_line_or_accepted(kind, shipped, tmp_path,
                                                               tiny_data, monkeypatch):
    monkeypatch.chdir(REPO)  # the shipped files name the checkpoint from the repository
    monkeypatch.setattr("compress.api.run_recipe", _stop)
    monkeypatch.setattr("compress.search.study.run_search", _stop)
    monkeypatch.setattr("compress.tools.train.train_from_data_config", _stop)
    # An architecture search builds designs of its space to check it (a second each): the
    # types must be refused before that, as the file is read.
    monkeypatch.setattr("compress.search.arch_job.check_space", _stop)
    # The shipped checkpoint read once for the whole loop (a read rebuilds the model: about
    # 0.1 s, some 200 times per search file); a path that does not load still fails each time.
    loaded: dict[Path, Any] = {}

    def load_once(path):
        key = Path(path).resolve()
        if key not in loaded:
            loaded[key] = load_checkpoint(path)
        return loaded[key]

    monkeypatch.setattr("compress.recipe.schema.load_checkpoint", load_once)
    raw = yaml.safe_load(shipped.read_text())
    if kind == "arch":  # its last layer predicts TrashNet's 6 classes: the tiny data has 3
        assert raw["architecture"]["backbone"][-1] == [1, "Linear", [6]]
        raw["architecture"]["backbone"][-1] = [1, "Linear", [len(TINY_CLASSES)]]
    refused = 0
    for number, (path, original) in enumerate(_paths(raw)):
        for value in WRONG_VALUES:
            if _kind(value) == _kind(original):
                continue
            file = tmp_path / f"{number}-{_kind(value)}" / shipped.name
            file.parent.mkdir()
            file.write_text(yaml.dump(_mutated(raw, path, value), Dumper=SAFE_DUMPER))
            out = file.parent / "out"
            result = CliRunner().invoke(main, [str(a) for a in
                                               _command(kind, file, out, tiny_data)])
            where = f"{shipped.name}: {'.'.join(map(str, path))} = {value!r}"
            if isinstance(result.exception, Accepted):
                assert value is None or path in REPLACED_BY_DATA_OPTION or \
                    original is None and value == 7 or \
                    _fixed_number_for_a_range(original, value), f"{where}: accepted"
                continue
            refused += 1
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2, f"{where}: {result.output[-1500:]}"
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}: {lines}"
            if value is not None:  # null is no type error: refused later for another reason
                assert any(key in lines[0] for key in _named(path)), \
                    f"{where}: the key is not named: {lines}"
            assert not out.exists(), f"{where}: {out} was written"
    assert refused > 10


@pytest.mark.parametrize("command, file, message", [
    ("run", "recipes/arch_mnv3.yaml", "an architecture-search file (it has architecture:), "
                                      "which compress arch-search reads"),
    ("search", "recipes/arch_mnv3.yaml", "which compress arch-search reads"),
    ("arch-search", "recipes/smoke.yaml", "a recipe (it has checkpoint:), which compress run "
                                          "reads"),
    ("arch-search", "recipes/mnv3_search.yaml", "which compress search reads"),
    ("run", "recipes/data/trashnet.yaml", "a data YAML (it has DATA_PATH:), which compress "
                                          "train --data reads"),
    ("run", "recipes/models/mobilenetv3.yaml", "which compress train --model reads"),
])
def test_a_file_given_to_another_command_names_the_one_that_reads_it(command, file, message,
                                                                     tmp_path, tiny_data,
                                                                     monkeypatch):
    monkeypatch.chdir(REPO)
    args = [command, file, "--out", tmp_path / "out", "--data", tiny_data]
    if command != "run":
        args += ["--trials", "1"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "out").exists()
