"""Shared fixtures: tiny image folders and tiny models built in the test, and the real
data where it is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
TRASHNET = REPO.parent / "shared" / "data" / "trashnet"
# --set options that cut a run's stage-table timing to a few batch-1 runs in one runtime:
# for tests of what a run decides and writes, not of its timing figures.
BENCH_CUT_SHORT = ["--set", "bench.runs=10", "--set", "bench.warmup=0",
                   "--set", "bench.batch_sizes=[1]", "--set", "bench.compare_runtimes=false"]
TINY_CLASSES = ["blue", "green", "red"]

# Every module type of the competition's YAML format, once (the Kindle builder tests).
EVERY_MODULE = {
    "input_channel": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
    "backbone": [
        [1, "Conv", [16, 3, 2]],
        [2, "DWConv", [16, 3, 2, None, "ReLU6"]],
        [2, "Bottleneck", [24, True, 1, 0.5, "ReLU"]],
        [2, "InvertedResidualv2", [24, 6, 1]],
        [1, "InvertedResidualv3", [5, 3, 40, 1, 1, 2]],
        [1, "MaxPool", [2]],
        [1, "AvgPool", [3, 1, 1]],
        [1, "Conv", [64, 1, 1, None, 1, "HardSwish"]],
        [1, "GlobalAvgPool", []],
        [1, "Flatten", []],
        [2, "Linear", [32, "ReLU"]],
        [1, "Linear", [5]],
    ],
}

# A small Kindle-style model with the blocks MobileNetV3 uses; fast on CPU.
TINY_MNV3 = {
    "input_channel": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
    "backbone": [
        [1, "Conv", [16, 3, 2, None, 1, "HardSwish"]],
        [1, "InvertedResidualv3", [3, 1, 16, 0, 0, 1]],
        [1, "InvertedResidualv3", [3, 4, 24, 1, 1, 2]],
        [1, "InvertedResidualv3", [5, 3, 24, 1, 1, 1]],
        [1, "Conv", [64, 1, 1]],
        [1, "GlobalAvgPool", []],
        [1, "Flatten", []],
        [1, "Linear", [3]],
    ],
}


class HandNet(nn.Module):
    """conv 3->8 k3 s1 p1 at 10x10, depthwise 8 k3 s2 p1 -> 5x5, 1x1 8->4, linear 4->2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.pw(self.dw(torch.relu(self.bn(self.conv(x)))))
        return self.fc(x.mean((2, 3)))


def make_image_folder(root: Path, per_class: dict[str, int], size: int = 40,
                      seed: int = 0) -> Path:
    """ROOT/<split>/<class>/*.png where each class is a dominant colour plus noise."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for channel, name in enumerate(TINY_CLASSES[::-1]):  # red=0, green=1, blue=2
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, size=(size, size + 8, 3), dtype=np.uint8)
                pixels[..., channel] = rng.integers(150, 255, size=(size, size + 8))
                Image.fromarray(pixels).save(folder / f"{name}{i}.png")
    return root


def write_tiny_recipe(path: Path, checkpoint: Path, data: Path, stages: list[dict],
                      **sections) -> Path:
    """A recipe over the tiny checkpoint and folder: 8-image batches, no loader workers,
    a few timed runs without warm-up (figures are not what these tests check), the final
    model not compared across runtimes (tests of that ask for it); `sections` replace or
    add top-level keys."""
    import yaml

    recipe = {"checkpoint": str(checkpoint),
              "data": {"root": str(data), "batch_size": 8, "num_workers": 0},
              "bench": {"batch_sizes": [1], "warmup": 0, "runs": 3,
                        "compare_runtimes": False},
              "stages": stages} | sections
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def write_train_yamls(folder: Path, data: Path, **keys) -> tuple[Path, Path]:
    """The tiny model's YAML and a data YAML over the tiny folder for `compress train`:
    32 px, 1 epoch, 8-image batches, no loader workers; `keys` replace or add data keys."""
    import yaml

    model_yaml, data_yaml = folder / "model.yaml", folder / "data.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MNV3))
    data_yaml.write_text(yaml.safe_dump({"DATA_PATH": str(data), "IMG_SIZE": 32, "EPOCHS": 1,
                                         "BATCH_SIZE": 8, "NUM_WORKERS": 0} | keys))
    return model_yaml, data_yaml


def stage_context(input_size, classes, device, stage_dir, spec, **fields):
    """A StageContext as the pipeline builds it, with a measurer of the recipe's default
    bench settings (a stage that decides by measuring asks it)."""
    from compress.pipeline.measurer import Measurer
    from compress.recipe.schema import BenchSection
    from compress.stages.base import StageContext

    measurer = Measurer(bench=BenchSection(), data=fields.get("data"), device=device,
                        input_size=input_size)
    return StageContext(input_size, classes, device, stage_dir, spec, measurer=measurer,
                        **fields)


class MacsClock:
    """Stands in for the measurer's timings in turn: an ONNX file's latency is its MACs
    (in millions) times `ms_per_mmac`, plus `overhead_ms`, so a stage that decides by
    measuring decides on the structure of its models, never on the load of the machine.
    Every request is kept in `turns`: the MACs of each file, in the order they were timed.
    Install it on one measurer (`clock.install(ctx.measurer)`) or, for a run through the
    CLI, on the class (`clock.patch(monkeypatch)`)."""

    def __init__(self, input_size: int, overhead_ms: float = 0.0, ms_per_mmac: float = 1.0):
        self.input_size, self.overhead_ms, self.ms_per_mmac = input_size, overhead_ms, ms_per_mmac
        self.turns: list[list[int]] = []

    def time_in_turn(self, paths, runs=None, batch=1):
        from compress.measure.latency import InTurn
        from compress.measure.onnx_macs import onnx_macs

        macs = [onnx_macs(path, self.input_size) for path in paths]
        self.turns.append(macs)
        ms = [batch * (self.overhead_ms + m / 1e6 * self.ms_per_mmac) for m in macs]
        return InTurn([ms[0] / m for m in ms], ms)

    def install(self, measurer) -> None:
        measurer.time_in_turn = self.time_in_turn

    def patch(self, monkeypatch) -> None:
        from compress.pipeline.measurer import Measurer

        monkeypatch.setattr(Measurer, "time_in_turn",
                            lambda measurer, paths, runs=None, batch=1:
                            self.time_in_turn(paths, runs, batch))


def apply_stage(stage, model, ctx):
    """The model a stage returns and its result as data (what the record stores)."""
    output = stage.apply(model, ctx)
    return output.model, output.result.to_dict()


def tiny_fit_setup(tiny_data: Path, spec: dict, img_size: int = 32):
    """What fit() takes for the tiny model on the tiny folder: the model (seeded), train and
    val sets, and the checkpoint template."""
    from compress.checkpoint import Checkpoint
    from compress.data.config import DataConfig
    from compress.data.training_data import train_val_datasets
    from compress.models import build_model

    data = DataConfig(data_path=str(tiny_data), img_size=img_size, num_workers=0)
    train_set, val_set, classes = train_val_datasets(data)
    torch.manual_seed(0)
    model = build_model(spec)
    return model, train_set, val_set, Checkpoint(model, spec, classes, img_size)


def interrupt_evaluation(monkeypatch, count: int) -> None:
    """fit()'s `count`-th evaluation raises KeyboardInterrupt, as a run killed there would
    stop (the epochs before it saved); monkeypatch.undo() lets the next run through."""
    import compress.training.engine as engine

    calls, real_predict = {"n": 0}, engine.predict

    def predict_until_interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == count:
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(engine, "predict", predict_until_interrupted)


def run_cli(args):
    """Exit code and the combined stdout/stderr of `compress ARGS`."""
    from click.testing import CliRunner

    from compress.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def assert_user_error(args, *fragments):
    """The command fails with one line naming the problem and exit code 2."""
    code, output = run_cli(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("tiny"), {"train": 12, "val": 4})


def tiny_spec() -> dict:
    return {"kind": "kindle", "config": TINY_MNV3}


@pytest.fixture()
def tiny_model_spec() -> dict:
    return tiny_spec()


def save_tiny_checkpoint(path: Path, spec: dict | None = None) -> Path:
    """The tiny Kindle model, untrained (seeded), saved as a compress checkpoint (32 px,
    3 classes): the same weights wherever it is built."""
    from compress.checkpoint import Checkpoint, save_checkpoint
    from compress.models import build_model

    spec = spec or tiny_spec()
    torch.manual_seed(0)
    return save_checkpoint(path, Checkpoint(build_model(spec).eval(), spec, TINY_CLASSES, 32))


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_model_spec) -> Path:
    return save_tiny_checkpoint(tmp_path / "tiny.safetensors", tiny_model_spec)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _no_retiming():
    """Timings in the suite are not timed again when other processes use the cores: the
    suite's own workers do, all the time, so every timing would run three times over. The
    tests of re-timing set COMPRESS_RETIME_LIMIT themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESS_RETIME_LIMIT", "1")
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread_per_process():
    """The suite's own processes (one per core under pytest-xdist) compute on one thread:
    torch, and the BLAS and OpenMP pools under numpy (the Tucker decompositions). Their tiny
    models gain nothing from a second thread, and on a 2-core machine shared with the other
    worker and subprocesses each kernel's second thread waits for a core: the plan and
    quantize tests ran 2-3x slower on two threads, the Tucker of a ResNet-50 4x slower
    beside a second worker. Under xdist, subprocesses (runs, search workers, the timing
    process) get OMP_NUM_THREADS=1 for the same reason; a single-process suite leaves them
    their default. COMPRESS_TEST_TORCH_THREADS=0 keeps every default."""
    import os

    from threadpoolctl import threadpool_limits

    threads = int(os.environ.get("COMPRESS_TEST_TORCH_THREADS", "1"))
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    with threadpool_limits(threads), pytest.MonkeyPatch.context() as patch:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            patch.setenv("OMP_NUM_THREADS", str(threads))
        yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _image_cache_on_disk_in_a_temporary_folder(tmp_path_factory):
    """Decoded images go to this session's folder, never to /dev/shm or ~/.cache (runs of
    the suite would pile up there); subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("COMPRESS_IMAGE_CACHE", "disk")
        yield


def pytest_collection_modifyitems(items):
    """Tests that read the real images carry the `data` marker (-m "not data" skips them)."""
    for item in items:
        if "trashnet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


# A test of this many seconds or more (setup, call and teardown together) belongs to the
# `slow` marker, which the edit-test loop leaves out (python -m pytest -m "not slow").
SLOW_SECONDS = 10.0
_UNMARKED_SLOW: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if "slow" in report.keywords or report.skipped:
        return
    total = _UNMARKED_SLOW.get(report.nodeid, 0.0) + report.duration
    _UNMARKED_SLOW[report.nodeid] = total


def pytest_terminal_summary(terminalreporter):
    """Names every test that took SLOW_SECONDS or more without the `slow` marker."""
    unmarked = {nodeid: seconds for nodeid, seconds in _UNMARKED_SLOW.items()
                if seconds >= SLOW_SECONDS}
    if unmarked:
        terminalreporter.section("tests to mark slow")
        terminalreporter.write_line(
            f"these took {SLOW_SECONDS:.0f} s or more without @pytest.mark.slow (on a busy "
            "machine, check before marking):")
        for nodeid, seconds in sorted(unmarked.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"  {seconds:6.1f} s  {nodeid}")


@pytest.fixture(scope="session")
def trashnet() -> Path:
    if not (TRASHNET / "val").is_dir():
        pytest.skip(f"real data not found at {TRASHNET}: place TrashNet there to run this test")
    return TRASHNET


@pytest.fixture()
def tiny_model(tiny_model_spec):
    from compress.models import build_model

    return build_model(tiny_model_spec).eval()


@pytest.fixture()
def tiny_onnx(tmp_path, tiny_model):
    """The tiny model exported at 32 px with its class names in the file's metadata."""
    from compress.ops.onnx_export import export_onnx

    return export_onnx(tiny_model, tmp_path / "tiny.onnx", 32, classes=TINY_CLASSES)
