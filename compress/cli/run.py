"""`compress run` and `compress search`: a recipe run once, or searched with Optuna."""

from __future__ import annotations

import click

from compress.cli.train import cache_option, new_held_out_option

# Options that `run` and `search` share: the same recipe overrides.
_recipe_data_option = click.option(
    "--data", "data_root", default=None,
    help="Data root (ROOT/train, ROOT/val); overrides the recipe's data.root.")
_recipe_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set stages.1.epochs=1 (repeatable).")


def _tracking_options(command):
    """--track and --tracking-uri: the recipe's tracking section from the command line."""
    options = [
        click.option("--track", type=click.Choice(["mlflow"]), default=None,
                     help="Log to MLflow (the mlflow extra): recipe, per-stage figures, "
                          "device, report files [default: the recipe's tracking.to, none]."),
        click.option("--tracking-uri", default=None, metavar="URI",
                     help="MLflow tracking URI [default: sqlite:///RUNS/mlflow.db beside the "
                          "run folder; see it with mlflow ui --backend-store-uri URI]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def tracking_overrides(track: str | None, uri: str | None) -> tuple[str, ...]:
    return ((f"tracking.to={track}",) if track else ()) + \
        ((f"tracking.uri={uri}",) if uri else ())


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_recipe_data_option
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run folder [default: runs/<recipe name>].")
@_recipe_set_option
@cache_option
@new_held_out_option
@_tracking_options
@click.option("--resume", is_flag=True, help="Continue after the last finished stage.")
def run(recipe, data_root, out, overrides, cache, new_held_out, track, tracking_uri,
        resume) -> None:
    """Run a recipe: stages, each saved and measured (latency, MACs, params, F1, score).

    Without a data folder, stages and figures that need images are skipped and marked n/a.
    """
    from pathlib import Path

    from compress.api import run as run_recipe

    if cache:
        overrides += (f"data.cache={cache}",)
    if new_held_out:
        overrides += ("data.new_held_out=true",)
    overrides += tracking_overrides(track, tracking_uri)
    run_recipe(recipe, out or Path("runs") / Path(recipe).stem, data_root, overrides, resume,
               echo=click.echo)



def _study_options(command):
    """The options of `search` and `arch-search` that say where the study lives and how
    many trials it runs."""
    options = [
        click.option("--trials", type=click.IntRange(min=1), required=True,
                     help="Finished trials the study should hold, all workers together (a "
                          "rerun resumes up to this number)."),
        click.option("--storage", default=None, metavar="URL",
                     help="Optuna storage [default: sqlite:///OUT/study.db]; postgresql://... "
                          "lets processes on many machines share one study."),
        click.option("--study", "study_name", default=None,
                     help="Study name [default: the file's name]."),
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Trials run in parallel on this machine (processes sharing the "
                          "cores)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop starting trials after this many seconds."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_study_options
@click.option("--minimize", type=click.Choice(["latency", "macs"]), default=None,
              help="The second objective [default: the search block's minimize, latency].")
@_recipe_data_option
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Search folder [default: runs/search/<recipe name>].")
@_recipe_set_option
@cache_option
@_tracking_options
def search(recipe, trials, storage, study_name, workers, timeout, minimize, data_root, out,
           overrides, cache, track, tracking_uri) -> None:
    """Search the recipe's `search:` space with Optuna: maximise macro F1 on the held-out
    train images (val where the checkpoint records none), minimise
    batch-1 latency (or MACs). Each trial is a full `compress run` in OUT/trials/; the
    Pareto front is written as OUT/pareto.md, OUT/pareto.png and one runnable recipe per
    front trial in OUT/pareto/. Watch it live with `optuna-dashboard STORAGE_URL`.

    \b
    search:
      minimize: latency            # or macs
      sampler: tpe                 # or nsga2
      min_f1: 0.80                 # constraint
      prune_below_f1: 0.5          # stop trials whose fine-tuning ends below it
      proxy_epochs: 1              # cheap proxy: cap fine-tuning (0: none)
      params:
        stages.0.target_macs: {low: 0.3, high: 0.8}
        stages.1.lr: {low: 0.001, high: 0.05, log: true}
        stages.0.importance: {choices: [l1, l2]}
    """
    from compress.search.front import write_front
    from compress.search.job import StudyOptions, prepare_search, start_search_tracking
    from compress.search.study import run_search

    if minimize:
        overrides += (f"search.minimize={minimize}",)
    if cache:
        overrides += (f"data.cache={cache}",)
    overrides += tracking_overrides(track, tracking_uri)
    job = prepare_search(recipe, StudyOptions(trials, storage, study_name, workers, timeout,
                                              out), data_root, list(overrides))
    tracker = start_search_tracking(job, click.echo)
    try:
        run_search(job, echo=click.echo)
    except BaseException:
        tracker.finish(failed=True)
        raise
    lines, paths = write_front(job)
    tracker.files(paths[key] for key in ("table", "plot", "json"))
    tracker.finish()
    click.echo("Pareto front:")
    for line in lines:
        click.echo(line)
    click.echo(f"wrote {paths['table']}, {paths['plot']}, {paths['json']} and the front's "
               f"recipes in {paths['recipes']}/")


@click.command("arch-search")
@click.argument("search_file", type=click.Path(dir_okay=False))
@_study_options
@click.option("--minimize", type=click.Choice(["latency", "macs", "params"]), default=None,
              help="The second objective [default: the search block's minimize, latency].")
@click.option("--data", "data_root", default=None,
              help="Data root (ROOT/train, ROOT/val); overrides DATA_PATH of the data YAML.")
@click.option("--device", default="auto", show_default=True,
              help="Where trials train: auto, cpu or cuda[:N] (latency is timed in ONNX "
                   "Runtime on this machine's CPU).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Search folder [default: runs/arch-search/<search file name>].")
def arch_search(search_file, trials, storage, study_name, workers, timeout, minimize,
                data_root, device, out) -> None:
    """Search model designs in the competition's YAML format: each trial trains one design
    from scratch with a proxy (a few epochs, optionally fewer images or a smaller input) and
    is judged by macro F1 on train images held out of training (val is only reported) and by
    batch-1 latency against a reference model, timed interleaved (or MACs, parameters).

    The front is written as OUT/pareto.md, OUT/pareto.png and, per front design,
    OUT/front/NAME.yaml (the model) and NAME.data.yaml (its training at full epochs):
    `compress train --model OUT/front/NAME.yaml --data OUT/front/NAME.data.yaml`, then
    `compress run` on the trained checkpoint. A search file:

    \b
    data: recipes/data/trashnet_calibration.yaml   # CALIBRATION_RATIO: the held-out split
    reference: recipes/models/mobilenetv3.yaml
    architecture:
      input_size: {choices: [96, 128]}
      width_multiple: {low: 0.5, high: 1.0, step: 0.25}
      train: {lr: {low: 0.01, high: 0.1, log: true}}
      backbone:
        - [1, Conv, [16, 3, 2, null, 1, HardSwish]]
        - module: {choices: [InvertedResidualv3, InvertedResidualv2, none]}
          repeat: {low: 1, high: 3}
          channels: {choices: [24, 32]}
          stride: 2
        - [1, GlobalAvgPool, []]
        - [1, Flatten, []]
        - [1, Linear, [6]]
    search:
      minimize: latency
      proxy: {epochs: 5, train_share: 1.0, image_scale: 1.0}
      prune_margin: 0.15     # stop trials this far below the median at an epoch

    recipes/arch_mnv3.yaml is a full example around the competition's MobileNetV3.
    """
    from compress.search.arch_front import write_arch_front
    from compress.search.arch_job import prepare_arch_search
    from compress.search.arch_trial import objective
    from compress.search.job import StudyOptions
    from compress.search.study import run_search

    job = prepare_arch_search(search_file, StudyOptions(trials, storage, study_name, workers,
                                                        timeout, out),
                              data_root, minimize, device, echo=click.echo)
    run_search(job, echo=click.echo, objective=objective)
    lines, paths = write_arch_front(job)
    click.echo("Pareto front:")
    for line in lines:
        click.echo(line)
    click.echo(f"wrote {paths['table']}, {paths['plot']}, {paths['json']} and the front's "
               f"model and data YAMLs in {paths['designs']}/")
