"""The Pareto front of an architecture search: a Markdown table, a JSON file, a plot, and per
front design a model YAML and a data YAML in the competition's format, so that
`compress train --model front/X.yaml --data front/X.data.yaml` trains it fully.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from compress.data.config import YAML_KEYS, DataConfig
from compress.fileio import write_atomic
from compress.search.arch_job import ArchJob
from compress.search.arch_trial import full_data
from compress.search.architecture import Design
from compress.search.front import front_trials, write_front_files


def write_arch_front(job: ArchJob) -> tuple[list[str], dict[str, Path]]:
    """The front of the study (feasible trials only, when min_f1 is set), as files."""
    study, front, done = front_trials(job)
    out = job.out_dir
    front_dir = out / "front"
    front_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| trial | held-out macro F1 | val macro F1 | speed-up | latency | MACs | params "
             "| input | lr | RandAugment | model YAML |", "|" + "---|" * 11]
    for trial in front:
        figures, design = trial.user_attrs["figures"], trial_design(trial)
        model_path, _ = write_design(front_dir / f"{job.study_name}-{trial.number:04d}", job,
                                     trial, design)
        lines.append(
            f"| {trial.number} | {figures['held_out_macro_f1']:.4f} | "
            f"{figures['macro_f1']:.4f} | {figures['speedup']:.2f}x | "
            f"{figures['latency_ms']:.2f} ms | {figures['macs'] / 1e6:.1f} M | "
            f"{figures['params']:,} | {design.input_size} | "
            f"{full_data(job, design).init_lr:.4g} | "
            f"{_magnitude(full_data(job, design))} | {model_path} |")
    lines, paths = write_front_files(
        job, study, front, done, lines, reference="reference",
        objectives=["maximize held-out macro_f1", f"minimize {study.metric_names[1]}"],
        extra={"proxy": job.section.proxy.model_dump()})
    return lines, paths | {"designs": front_dir}


def trial_design(trial) -> Design:
    saved = trial.user_attrs["design"]
    return Design(saved["model"], saved["input_size"], saved["lr"],
                  saved["randaugment_magnitude"])


def write_design(stem: Path, job: ArchJob, trial, design: Design) -> tuple[Path, Path]:
    """STEM.yaml (the model) and STEM.data.yaml (its training, the data YAML's epochs),
    each with a header of the trial's proxy figures."""
    figures = trial.user_attrs["figures"]
    proxy = job.section.proxy
    header = (f"# compress arch-search {job.spec_path}, study {job.study_name}, trial "
              f"{trial.number} (Pareto front). Proxy: {proxy.epochs} epochs, "
              f"{proxy.train_share:.0%} of the training images, input x{proxy.image_scale}:\n"
              f"#   held-out macro F1 {figures['held_out_macro_f1']:.4f}, val "
              f"{figures['macro_f1']:.4f}; {figures['speedup']:.2f}x faster than "
              f"{job.reference} at batch 1; {figures['macs'] / 1e6:.1f} M MACs at "
              f"{design.input_size} px, {figures['params']:,} params\n")
    model_path, data_path = stem.with_suffix(".yaml"), stem.with_suffix(".data.yaml")
    write_atomic(model_path, header + f"# train: compress train --model {model_path} --data "
                 f"{data_path}\n" + yaml.safe_dump(design.config, sort_keys=False,
                                                   default_flow_style=None))
    write_atomic(data_path, header + "# the data YAML of the search with this design's input "
                 "size, learning rate and RandAugment magnitude\n"
                 + yaml.safe_dump(data_yaml(full_data(job, design)), sort_keys=False))
    return model_path, data_path


def data_yaml(data: DataConfig) -> dict:
    """A DataConfig as the competition's data YAML keys."""
    keys = {field: key for key, field in YAML_KEYS.items()}
    return {keys[name]: value for name, value in asdict(data).items() if name in keys}


def _magnitude(data: DataConfig) -> str:
    if data.aug_train != "randaugment_train":
        return "off"
    level = (data.aug_train_params or {}).get("level")
    return "9 (default)" if level is None else str(level)
