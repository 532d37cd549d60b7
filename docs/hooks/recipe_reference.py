"""MkDocs hook: the pages that are generated from the code at build time, so that they
cannot drift from it.

- `recipe-reference.md` is written here, from the pydantic models that validate a recipe:
  the top-level keys and sections (`compress.recipe.schema.Recipe`), the `search:` block
  (`compress.recipe.search_space`) and every registered stage's `Config` (one table per
  stage: key, type, default, bounds, help text). No file of that name is in `docs/`.
- `api.md` names the public API as `::: compress.NAME` lines; each is pointed at the module
  that defines NAME (`compress._EXPORTS`), and the build fails when a name of
  `compress.__all__` is missing from the page or the page names one that is not public.

The package is imported from this repository (the folder that holds mkdocs.yml), never
from another installed copy. Importing the stages imports torch: a few seconds.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PAGE = "recipe-reference.md"
HELP_FILE = Path(__file__).with_name("recipe_help.yml")
API_PAGE = "api.md"


def _import(name: str) -> types.ModuleType:
    """A module of the package in ROOT (refusing another installed copy of it)."""
    if str(ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(name)
    package = sys.modules["compress"]
    if Path(package.__file__).resolve().parent != (ROOT / "compress").resolve():
        raise PluginError(f"the docs must be built from the code beside mkdocs.yml, but "
                          f"`compress` was imported from {package.__file__}")
    return module


# ---------------------------------------------------------------- recipe reference

def _type_name(annotation: Any) -> str:
    """A field's type as a recipe writer reads it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " or ".join(f"`{_yaml(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (list, tuple, set):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(_type_name(a) for a in args) + "]"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}" if args else "map"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return f"[section](#{_anchor(annotation)})"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " or ".join(f"`{m.value}`" for m in annotation)
    names = {str: "text", int: "integer", float: "number", bool: "true or false",
             Any: "any"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _yaml(value: Any) -> str:
    """A value as it would be written in a recipe (YAML flow style)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    return f"`{_yaml(value)}`"


_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="),
           (annotated_types.MinLen, "min_length", "length >="),
           (annotated_types.MaxLen, "max_length", "length <="))


def _bounds(field: Any) -> str:
    found = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(found)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(model: type[BaseModel]) -> str:
    return "model-" + re.sub(r"[^a-z0-9]+", "-", model.__name__.lower()).strip("-")


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested_models(a)]


class _Help:
    """Help text kept in HELP_FILE for keys the code does not describe yet."""

    def __init__(self, path: Path):
        self.entries: dict[str, dict[str, Any]] = yaml.safe_load(path.read_text()) or {}
        self.used: set[tuple[str, str]] = set()

    def row(self, model: type[BaseModel], name: str, field: Any) -> tuple[str, str]:
        """The key's type and help text."""
        kind, text = _type_name(field.annotation), field.description or ""
        entry = self.entries.get(model.__name__, {}).get(name)
        if entry is not None:
            self.used.add((model.__name__, name))
            if field.description:
                raise PluginError(f"{HELP_FILE.name}: {model.__name__}.{name} is described in "
                                  "the code now: delete its entry")
            if isinstance(entry, dict):
                kind, text = entry.get("type", kind), entry.get("help", "")
            else:
                text = entry
        return kind, text

    def check_all_used(self) -> None:
        unused = [f"{cls}.{key}" for cls, keys in self.entries.items() for key in keys
                  if (cls, key) not in self.used]
        if unused:
            raise PluginError(f"{HELP_FILE.name} describes keys that no recipe class has: "
                              f"{', '.join(unused)}")


def _table(model: type[BaseModel], path: str, level: int, notes: _Help,
           separate: tuple[str, ...] = ()) -> list[str]:
    """One row per key of `model`, then a table (a heading `level` deep) for each nested
    section it holds, except the keys in `separate` (documented elsewhere on the page)."""
    lines = ["| key | type | default | bounds | what it does |", "|---|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        kind, text = notes.row(model, name, field)
        lines.append(f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | "
                     f"{_cell(_bounds(field))} | {_cell(text)} |")
        if name not in separate:
            nested += [(f"{path}{name}", m) for m in _nested_models(field.annotation)]
    for sub_path, sub_model in nested:
        lines += ["", f"{'#' * level} `{sub_path}` {{ #{_anchor(sub_model)} }}", "",
                  *_table(sub_model, sub_path + ".", level + 1, notes)]
    return lines


def _first_paragraph(text: str | None) -> str:
    return " ".join((inspect.cleandoc(text or "").split("\n\n") or [""])[0].split())


def recipe_reference() -> str:
    schema = _import("compress.recipe.schema")
    search_space = _import("compress.recipe.search_space")
    stages = _import("compress.stages")
    notes = _Help(HELP_FILE)
    lines = [
        "# Recipe reference",
        "",
        "Every key a recipe accepts, generated from the classes that validate it when the "
        "documentation is built. A key that is not listed is an error; a key left out takes "
        "the default shown. How to put a recipe together: [Recipes](recipes.md).",
        "",
        "## Top level",
        "",
        *_table(schema.Recipe, "", 3, notes, separate=("search",)),
        "",
        "## The search block { #model-searchsection }",
        "",
        "`search:` is read by `compress search` only ([Search](search.md)); "
        "`compress run` ignores it. Each entry of `params` maps a recipe path (as `--set` "
        "takes it) to a range or a list of choices.",
        "",
        *_table(search_space.SearchSection, "search.", 3, notes),
        "",
        "## Stages",
        "",
        "Each entry of `stages:` is a one-key map, `- NAME: {options}`. "
        f"Stages after which a fine-tune should follow (a recipe without one is warned "
        f"about): {', '.join(f'`{n}`' for n in schema.NEEDS_RECOVERY)}.",
    ]
    for name in stages.list_stages():
        cls = stages.stage_class(name)
        module = sys.modules[cls.__module__]
        lines += ["", f"### {name}", "", _first_paragraph(module.__doc__), "",
                  f"Options (`{cls.Config.__name__}` in `{cls.__module__}`):", "",
                  *_table(cls.Config, f"stages.N.{name}.", 4, notes)]
    notes.check_all_used()
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- API page

_BLOCK = re.compile(r"^::: compress\.(\w+)[ \t]*$", re.MULTILINE)


def api_page(markdown: str) -> str:
    package = _import("compress")
    exports: dict[str, str] = package._EXPORTS
    public = set(package.__all__) - {"__version__"}
    named = _BLOCK.findall(markdown)
    missing = sorted(public - set(named))
    unknown = sorted(set(named) - public)
    twice = sorted({n for n in named if named.count(n) > 1})
    if missing or unknown or twice:
        raise PluginError(f"{API_PAGE} must name every public name of compress.__all__ "
                          f"once: missing {missing}, not public {unknown}, twice {twice}")

    def block(match: re.Match) -> str:
        name = match.group(1)
        return (f"::: {exports[name]}.{name}\n    options:\n"
                f"      heading: \"compress.{name}\"\n      toc_label: \"{name}\"")

    return _BLOCK.sub(block, markdown)


# ---------------------------------------------------------------- MkDocs events

def on_files(files: Files, config: Any) -> Files:
    if files.get_file_from_path(REFERENCE_PAGE) is not None:
        raise PluginError(f"docs/{REFERENCE_PAGE} is generated: remove the file")
    files.append(File.generated(config, REFERENCE_PAGE, content=recipe_reference()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == API_PAGE:
        return api_page(markdown)
    return markdown
