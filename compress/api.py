"""`compress.run`: the pipeline from Python (a notebook, a script), as `compress run` runs it.

Errors a user can cause raise `UserError`, a stage whose result fails its check raises
`StageFailed`: the caller decides, where the CLI turns them into exit codes 2 and 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from compress.errors import UserError
from compress.pipeline.loop import run_recipe
from compress.pipeline.runstore import StageRecord
from compress.recipe.loading import load_recipe, recipe_from_raw, with_overrides
from compress.recipe.schema import Recipe


def run(recipe: str | Path | Recipe, out: str | Path, data: str | Path | None = None,
        overrides: Iterable[str] = (), resume: bool = False,
        echo: Callable[[str], None] = print) -> list[StageRecord]:
    """Run `recipe` (a YAML path or a loaded `Recipe`) into the run folder `out`; return one
    frozen record per stage, the input first.

    `data` replaces the recipe's data root and must be a folder (a mistyped path is an
    error, not "no data"); a recipe whose own `data.root` does not exist runs the no-data
    path: image-dependent steps are skipped and their figures are None. `overrides` are
    `--set` assignments such as "stages.1.epochs=1"; `echo` receives each progress line.
    """
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data {data}: " + ("is a file, not a folder" if Path(data).exists()
                                              else "no such folder"))
    if isinstance(recipe, Recipe):
        recipe = _revalidated(recipe, list(overrides), data)
    else:
        recipe = load_recipe(recipe, list(overrides), None if data is None else str(data))
    return run_recipe(recipe, out, resume, echo=echo)


def _revalidated(recipe: Recipe, overrides: list[str], data: str | Path | None) -> Recipe:
    """A loaded recipe with overrides applied, checked again as a file would be: a Recipe
    built or edited in Python skipped the stage and checkpoint checks of load_recipe."""
    raw = with_overrides(recipe.model_dump(mode="json"), overrides, data)
    return recipe_from_raw(raw, "(in memory)")
