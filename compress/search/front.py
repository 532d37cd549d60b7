"""The Pareto front of a study: a Markdown table, a JSON file, a plot, and one runnable
recipe per front trial. The table, JSON and plot are written by `write_front_files` for the
architecture search's front too.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from compress.fileio import write_atomic
from compress.plotting import figure_file
from compress.search.job import SearchJob
from compress.search.objective import format_value
from compress.search.storage import redacted
from compress.search.study import finished_trials, load_study


def front_trials(job) -> tuple[object, list, list]:
    """The study, its Pareto front (feasible trials only, when min_f1 is set) by F1 from
    the best, and every finished trial with values."""
    study = load_study(job)
    front = sorted(study.best_trials, key=lambda t: -t.values[0])
    return study, front, [t for t in finished_trials(study) if t.values is not None]


def write_front(job: SearchJob) -> tuple[list[str], dict[str, Path]]:
    """The Pareto front of the study (feasible trials only, when min_f1 is set)."""
    study, front, done = front_trials(job)
    out = job.out_dir
    recipe_dir = out / "pareto"
    recipe_dir.mkdir(parents=True, exist_ok=True)
    # The objective is the held-out macro F1 where the checkpoint records held-out images;
    # val is shown for the report.
    lines = ["| trial | held-out macro F1 | val macro F1 | speed-up | MACs | params | "
             + " | ".join(job.section.params) + " | recipe |",
             "|" + "---|" * (7 + len(job.section.params))]
    for trial in front:
        figures = trial.user_attrs["figures"]
        recipe_path = recipe_dir / f"{job.study_name}-{trial.number:04d}.yaml"
        _write_recipe(recipe_path, trial, job)
        lines.append(
            f"| {trial.number} | {_f1(figures.get('held_out_macro_f1'))} | "
            f"{_f1(figures['macro_f1'])} | {figures['speedup']:.2f}x | "
            f"{figures['macs'] / 1e6:.1f} M | {figures['params']:,} | "
            + " | ".join(format_value(trial.params.get(name)) for name in job.section.params)
            + f" | {recipe_path} |")
    lines, paths = write_front_files(
        job, study, front, done, lines, reference="input", hidden=("recipe",),
        objectives=["maximize macro_f1", f"minimize {study.metric_names[1]}"])
    return lines, paths | {"recipes": recipe_dir}


# The plot's x axis by the study's second objective; {reference}: what speed-ups are over.
X_LABELS = {"latency": "batch-1 speed-up over the {reference} (interleaved)",
            "macs": "MACs (millions)", "params": "parameters (millions)"}


def write_front_files(job, study, front: list, done: list, lines: list[str], *,
                      objectives: list[str], reference: str, extra: dict | None = None,
                      hidden: tuple[str, ...] = ()) -> tuple[list[str], dict[str, Path]]:
    """What a recipe search and an architecture search (compress.search.arch_front) both
    write of their front, so that the two stay alike: the table `lines` as pareto.md (with a
    note when the front is empty), every trial as search.json (`extra` keys beside the
    study's; the trials' user attributes but the `hidden` ones) and the plot pareto.png.
    Returns the lines as written and the files by role."""
    out = job.out_dir
    if not front:
        lines = lines + ["(empty: no finished trial" + (
            f" meets min_f1 {job.section.min_f1})" if job.section.min_f1 is not None else ")")]
    write_atomic(out / "pareto.md", "\n".join(lines) + "\n")
    write_atomic(out / "search.json", json.dumps({
        "study": job.study_name, "storage": redacted(job.storage_url),
        "objectives": objectives, **(extra or {}),
        "trials": [{"number": t.number, "state": t.state.name, "values": t.values,
                    "params": t.params, "pareto": t in front,
                    **{k: v for k, v in t.user_attrs.items() if k not in hidden}}
                   for t in study.get_trials(deepcopy=False)]}, indent=1))
    minimize = job.section.minimize

    def x_of(trial) -> float:
        figures = trial.user_attrs["figures"]
        return figures["speedup"] if minimize == "latency" else figures[minimize] / 1e6

    plot = plot_front(out / "pareto.png", done, front, x_of,
                      X_LABELS[minimize].format(reference=reference))
    return lines, {"table": out / "pareto.md", "json": out / "search.json", "plot": plot}


def _f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_recipe(path: Path, trial, job: SearchJob) -> None:
    figures = trial.user_attrs["figures"]
    header = (f"# compress search {job.recipe_path}, study {job.study_name}, trial "
              f"{trial.number} (Pareto front): val macro F1 {figures['macro_f1']:.4f}, "
              f"{figures['speedup']:.2f}x faster, {figures['macs'] / 1e6:.1f} M MACs\n"
              + "".join(f"#   {name}: {value}\n" for name, value in trial.params.items()))
    if job.section.proxy_epochs is not None:
        header += (f"# fine-tuning was capped at {job.section.proxy_epochs} epochs (proxy); "
                   "raise the epochs for the full result\n")
    write_atomic(path, header + yaml.safe_dump(trial.user_attrs["recipe"], sort_keys=False))


def plot_front(path: Path, done: list, front: list, x_of, x_label: str) -> Path:
    """Every finished trial's macro F1 (its first objective) against `x_of(trial)`, the
    front in red with trial numbers."""
    with figure_file(path) as ax:
        ax.scatter([x_of(t) for t in done], [t.values[0] for t in done], c="0.6", s=18,
                   label="trials")
        ax.scatter([x_of(t) for t in front], [t.values[0] for t in front], c="tab:red", s=30,
                   label="Pareto front")
        for trial in front:
            ax.annotate(str(trial.number), (x_of(trial), trial.values[0]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(x_label)
        ax.set_ylabel("macro F1 (held-out train images where recorded, else val)")
        ax.grid(alpha=0.3)
        ax.legend()
    return path
