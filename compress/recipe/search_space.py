"""The `search:` block of a recipe: which recipe values `compress search` varies, and how.

    search:
      minimize: latency            # or macs; val macro F1 is always maximised
      sampler: tpe                 # or nsga2
      min_f1: 0.80                 # constraint: trials below it are never on the front
      prune_below_f1: 0.5          # stop a trial whose fine-tuning ends below this F1
      proxy_epochs: 1              # cheap proxy: cap every finetune stage (0: drop them)
      params:
        stages.0.target_macs: {low: 0.3, high: 0.8}
        stages.1.epochs: {low: 2, high: 10}
        stages.1.lr: {low: 0.001, high: 0.05, log: true}
        stages.0.importance: {choices: [l1, l2]}
        stages.4.rank_map[model.0.0]: {low: 4, high: 16, step: 4}

A parameter path is the same dotted path `--set` takes (list indices from 0; a layer name
with dots goes in square brackets). Integer bounds give integer values.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either a non-empty choices list or low and high")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        elif not self.low < self.high:
            raise ValueError("low must be below high")
        elif self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log needs low > 0 and no step")
        return self

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high)) and \
            (self.step is None or isinstance(self.step, int))

    def examples(self) -> list[Any]:
        """Values that every trial's recipe must accept: the bounds, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def distribution(self):
        """The Optuna distribution `suggest` draws from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.is_int:
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=self.step)

    def suggest(self, trial, name: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if self.is_int:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step,
                                   log=self.log)


class SearchSection(_Strict):
    params: dict[str, ParamSpec] = Field(description="recipe path -> range or choices")
    minimize: Literal["latency", "macs"] = Field(
        "latency", description="the second objective: batch-1 latency as a fraction of the "
        "input's (timed interleaved), or MACs")
    sampler: Literal["tpe", "nsga2"] = "tpe"
    min_f1: float | None = Field(None, ge=0, le=1, description="constraint on the macro F1 the "
                                 "trials are judged by (held-out train images, else val)")
    prune_below_f1: float | None = Field(
        None, ge=0, le=1, description="stop a trial when a fine-tuning stage ends below this")
    proxy_epochs: int | None = Field(
        None, ge=0, description="cap each finetune stage at this many epochs; 0 drops them")
    seed: int | None = Field(None, description="sampler seed (reproducible single-process "
                             "search); default: a different one per process")

    @model_validator(mode="after")
    def _not_empty(self):
        if not self.params:
            raise ValueError("the search space is empty: give at least one entry under params")
        return self


def with_params(raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw recipe with `params` (path -> value) set and no search block."""
    from compress.recipe.overrides import set_value

    result = copy.deepcopy(raw)
    result.pop("search", None)
    for path, value in params.items():
        set_value(result, path, value, what="search.params")
    return result


def with_proxy(raw: dict[str, Any], proxy_epochs: int | None) -> dict[str, Any]:
    """Fine-tuning stages capped at `proxy_epochs` epochs (0: removed)."""
    from compress.stages.finetune import FinetuneConfig

    if proxy_epochs is None:
        return raw
    default_epochs = FinetuneConfig.model_fields["epochs"].default
    stages = []
    for entry in raw["stages"]:
        (name, options), = entry.items()
        if name == "finetune":
            if proxy_epochs == 0:
                continue
            options = dict(options or {})
            options["epochs"] = min(options.get("epochs", default_epochs), proxy_epochs)
            entry = {name: options}
        stages.append(entry)
    return {**raw, "stages": stages}
