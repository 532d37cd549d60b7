"""The bad-input matrix: mistakes a new user makes and faults of the machine, each run as
the user would (the CLI), each ending in exit code 2 with exactly one `error:` line naming
the problem, no traceback, every file that was there before unchanged and nothing new
left behind (no empty output folder, no `*.tmp`)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_cli, write_tiny_recipe
from safetensors.torch import save_file

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.models import build_model


def _recipe(tmp_path: Path, checkpoint: Path, data: Path,
            stages: list[dict] | None = None) -> Path:
    return write_tiny_recipe(tmp_path / "recipe.yaml", checkpoint, data,
                             stages or [{"prune": {"ratio": 0.25}}, {"finetune": {"epochs": 1}}])


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                            0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def recipe_not_utf8(tmp, ckpt, data):
    path = tmp / "latin1.yaml"
    path.write_bytes(b"checkpoint: caf\xe9.safetensors\n")
    return ["run", path, "--out", tmp / "run"], ["latin1.yaml", "not UTF-8"]


def set_value_not_yaml(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "stages.1.epochs=[1", "--out",
             tmp / "run"], ["--set stages.1.epochs=[1", "not valid YAML"])


def duplicate_key(tmp, ckpt, data):
    path = _recipe(tmp, ckpt, data)
    path.write_text(path.read_text() + "seed: 1\nseed: 2\n")
    return ["run", path, "--out", tmp / "run"], ["recipe.yaml", "'seed' given twice"]


def boolean_for_a_number(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "stages.1.epochs=true", "--out",
             tmp / "run"], ["stages.1.finetune.epochs: expected a number, not true"])


def freeze_pattern_matching_nothing(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "stages.1.freeze=[backbone.*]",
             "--out", tmp / "run"], ["stages.1.finetune", "backbone.* matches no parameter"])


def ema_decay_of_one_or_more(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "stages.1.ema=1.5", "--out",
             tmp / "run"], ["stages.1.finetune.ema", "less than 1"])


def unknown_distillation_mode(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "stages.1.distill={mode: matching}",
             "--out", tmp / "run"], ["stages.1.finetune.distill.mode", "function_matching"])


def users_recipe_inside_out(tmp, ckpt, data):
    folder = tmp / "myexp"
    folder.mkdir()
    mine = folder / "recipe.yaml"
    mine.write_text("# my notes\n" + _recipe(tmp, ckpt, data).read_text())
    return ["run", mine, "--out", folder], ["no compress run wrote", "recipe.yaml"]


def mistyped_data_for_run(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--data", tmp / "tinyy", "--out", tmp / "run"],
            ["--data", "tinyy", "no such folder"])


def data_that_is_a_file(tmp, ckpt, data):
    (tmp / "notes.txt").write_text("not a folder")
    return (["eval", ckpt, "--data", tmp / "notes.txt"],
            ["notes.txt", "is a file, not a folder"])


def run_out_below_a_file(tmp, ckpt, data):
    (tmp / "taken").write_text("mine")
    return (["run", _recipe(tmp, ckpt, data), "--out", tmp / "taken" / "run"],
            ["--out", "taken is a file, not a folder"])


def predict_out_below_a_file(tmp, ckpt, data):
    (tmp / "taken").write_text("mine")
    return (["predict", ckpt, "--images", data / "val", "--out", tmp / "taken" / "sub.csv"],
            ["--out", "taken is a file, not a folder"])


def export_out_below_a_file(tmp, ckpt, data):
    (tmp / "taken").write_text("mine")
    return (["export", ckpt, "--out", tmp / "taken" / "m.onnx"],
            ["--out", "taken is a file, not a folder"])


def truncated_record_on_resume(tmp, ckpt, data):
    recipe = _recipe(tmp, ckpt, data, stages=[{"prune": {"ratio": 0.25}}])
    code, output = run_cli(["run", recipe, "--out", tmp / "run"])
    assert code == 0, output
    record = tmp / "run" / "stages" / "01-prune" / "record.json"
    record.write_text(record.read_text()[:40])
    return (["run", recipe, "--out", tmp / "run", "--resume"],
            ["stages/01-prune/record.json is damaged"])


def damaged_train_state_on_resume(tmp, ckpt, data):
    state = tmp / "ft" / "train" / "train_state.safetensors"  # where finetune's fit resumes
    state.parent.mkdir(parents=True)
    state.write_bytes(b"\x10" + b"\x00" * 7 + b"{damaged")
    return (["finetune", ckpt, "--data", data, "--out", tmp / "ft", "--epochs", 1],
            ["ft/train/train_state.safetensors", "cannot be read"])


def class_names_that_do_not_fit_the_outputs(tmp, ckpt, data):
    spec = load_checkpoint(ckpt).model_spec
    path = save_checkpoint(tmp / "two.safetensors",
                           Checkpoint(build_model(spec), spec, ["a", "b"], 32))
    return ["inspect", path], ["two.safetensors", "2 class names for a model with 3 outputs"]


def checkpoint_metadata_not_json(tmp, ckpt, data):
    path = tmp / "garbled.safetensors"
    save_file({"w": torch.zeros(1)}, str(path),
              metadata={"compress": "{not json"})
    return ["inspect", path], ["garbled.safetensors", "not a JSON object"]


def structural_edit_asking_for_terabytes(tmp, ckpt, data):
    import json

    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(metadata["compress"])
    conv = next(name for name, module in load_checkpoint(ckpt).model.named_modules()
                if isinstance(module, torch.nn.Conv2d))
    header["edits"] = [{"path": conv, "module": {
        "type": "Conv2d", "in_channels": 3, "out_channels": 10**7, "kernel_size": [10**3] * 2,
        "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1,
        "padding_mode": "zeros", "bias": False}}]  # 10^7 * 3 * 10^6 floats: 120 TB
    path = tmp / "huge.safetensors"
    save_file(tensors, str(path), metadata={"compress": json.dumps(header)})
    return ["inspect", path], ["huge.safetensors", "weights do not fit", "wrong shape"]


def onnx_file_as_checkpoint(tmp, ckpt, data):
    path = _onnx(tmp / "model.onnx", ["b", 3, 8, 8], ["b", 3])
    return ["export", path, "--out", tmp / "again.onnx"], \
        ["model.onnx", "an ONNX model, not weights or a checkpoint"]


def pickled_module_as_checkpoint(tmp, ckpt, data):
    torch.save(torch.nn.Linear(2, 2), tmp / "module.pt")
    return ["export", tmp / "module.pt", "--out", tmp / "m.onnx"], \
        ["module.pt", "pickled Python object (torch.nn.modules.linear.Linear)",
         "model.state_dict()"]


def text_file_as_checkpoint(tmp, ckpt, data):
    (tmp / "notes.txt").write_text("hello")
    return ["finetune", tmp / "notes.txt", "--data", data, "--out", tmp / "ft"], \
        ["notes.txt", "neither a compress checkpoint nor a torch file"]


def decompression_bomb_in_the_data(tmp, ckpt, data):
    root = tmp / "bombed"
    for split in ("train", "val"):
        for name in ("blue", "green", "red"):
            (root / split / name).mkdir(parents=True)
            (root / split / name / "x.png").write_bytes(_png_claiming(20000, 20000))
    return ["eval", ckpt, "--data", root], ["x.png", "cannot be read"]


def _onnx(path: Path, input_shape: list, output_shape: list, inputs: int = 1) -> Path:
    """A one-op ONNX graph with the given input and output shapes."""
    import onnx
    from onnx import TensorProto, helper

    names = [f"x{i}" for i in range(inputs)]
    graph = helper.make_graph(
        [helper.make_node("Identity" if inputs == 1 else "Add", names, ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, input_shape) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def onnx_with_two_inputs(tmp, ckpt, data):
    path = _onnx(tmp / "two.onnx", ["b", 3, 8, 8], ["b", 3, 8, 8], inputs=2)
    return ["bench", path, "--runs", 3, "--no-peak"], ["two.onnx", "2 inputs"]


def onnx_input_not_images(tmp, ckpt, data):
    path = _onnx(tmp / "flat.onnx", ["b", 10], ["b", 10])
    return ["inspect", path], ["flat.onnx", "not float images [batch, 3, height, width]"]


def onnx_output_not_class_scores(tmp, ckpt, data):
    path = _onnx(tmp / "map.onnx", ["b", 3, 8, 8], ["b", 3, 8, 8])
    return (["predict", path, "--images", data / "val", "--out", tmp / "sub.csv"],
            ["map.onnx", "not [batch, classes]"])


def onnx_fixed_batch_asked_for_8(tmp, ckpt, data):
    import torch

    from compress.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).model.eval()
    path = tmp / "batch1.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                      input_names=["images"], output_names=["logits"])
    return ["bench", path, "--batch", "1,8", "--runs", 3, "--no-peak"], \
        ["batch1.onnx", "batches of 1 only", "--batch 8"]


def onnx_class_names_not_json(tmp, ckpt, data):
    import onnx

    from compress.checkpoint import load_checkpoint
    from compress.ops.onnx_export import CLASSES_KEY, export_onnx

    path = export_onnx(load_checkpoint(ckpt).model, tmp / "names.onnx", 32, classes=["a"] * 3)
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == CLASSES_KEY:
            prop.value = "[blue, green"
    onnx.save(model, str(path))
    return ["inspect", path], ["names.onnx", "not readable"]


def _exported(tmp, ckpt):
    from compress.ops.onnx_export import export_onnx

    return export_onnx(load_checkpoint(ckpt).model, tmp / "model.onnx", 32)


def onnx_file_asked_to_run_in_torch(tmp, ckpt, data):
    return (["bench", _exported(tmp, ckpt), "--runtime", "torch", "--runs", 3, "--no-peak"],
            ["--runtime torch", "an ONNX file runs in onnxruntime"])


def precision_asked_of_an_onnx_file(tmp, ckpt, data):
    return (["predict", _exported(tmp, ckpt), "--precision", "fp16", "--images", data / "val",
             "--out", tmp / "sub.csv"], ["--precision applies to --runtime torch"])


def compare_across_runtimes(tmp, ckpt, data):
    return (["bench", _exported(tmp, ckpt), "--compare", ckpt, "--runs", 3, "--no-peak"],
            ["--compare", "different runtimes", "--runtime onnxruntime"])


def cpu_device_with_a_gpu_provider(tmp, ckpt, data):
    return (["bench", ckpt, "--device", "cpu", "--provider", "cuda", "--runs", 3, "--no-peak"],
            ["--device cpu and --provider cuda contradict"])


def cuda_graphs_on_the_cpu(tmp, ckpt, data):
    return (["bench", ckpt, "--device", "cpu", "--graphs", "--runs", 3, "--no-peak"],
            ["CUDA graphs need a CUDA device"])


def unknown_stage_runtime(tmp, ckpt, data):
    return (["run", _recipe(tmp, ckpt, data), "--set", "bench.runtime=tensorrt", "--out",
             tmp / "run"], ["bench.runtime", "onnxruntime"])


def data_as_a_path_with_the_data_option(tmp, ckpt, data):
    path = _recipe(tmp, ckpt, data)
    recipe = yaml.safe_load(path.read_text())
    recipe["data"] = "some/path"  # as an architecture-search file names its data YAML
    path.write_text(yaml.safe_dump(recipe))
    return (["run", path, "--data", data, "--out", tmp / "run"],
            ["recipe.yaml: data: expected a mapping (root, split", "got a string ('some/path')"])


def architecture_search_file_given_to_run(tmp, ckpt, data):
    path = tmp / "arch.yaml"
    path.write_text((REPO / "recipes" / "arch_mnv3.yaml").read_text())
    return (["run", path, "--data", data, "--out", tmp / "run"],
            ["arch.yaml: this is an architecture-search file", "compress arch-search reads"])


def architecture_search_file_given_to_search(tmp, ckpt, data):
    path = tmp / "arch.yaml"
    path.write_text((REPO / "recipes" / "arch_mnv3.yaml").read_text())
    return (["search", path, "--trials", "1", "--data", data, "--out", tmp / "study"],
            ["arch.yaml: this is an architecture-search file", "compress arch-search reads"])


def recipe_given_to_arch_search(tmp, ckpt, data):
    return (["arch-search", _recipe(tmp, ckpt, data), "--trials", "1", "--out", tmp / "study"],
            ["recipe.yaml: this is a recipe (it has checkpoint:)", "compress run reads"])


def data_yaml_with_a_list_for_a_number(tmp, ckpt, data):
    path = tmp / "data.yaml"
    path.write_text(f"DATA_PATH: {data}\nIMG_SIZE: 32\nEPOCHS: [3]\n")
    return (["train", "--model", "mobilenet_v3_small", "--data", path, "--out", tmp / "train"],
            ["data.yaml: EPOCHS: expected an integer, got a list"])


CASES = [recipe_not_utf8, set_value_not_yaml, duplicate_key, boolean_for_a_number,
         freeze_pattern_matching_nothing, ema_decay_of_one_or_more, unknown_distillation_mode,
         users_recipe_inside_out, mistyped_data_for_run,
         data_that_is_a_file, run_out_below_a_file, predict_out_below_a_file,
         export_out_below_a_file, truncated_record_on_resume, damaged_train_state_on_resume,
         class_names_that_do_not_fit_the_outputs, checkpoint_metadata_not_json,
         structural_edit_asking_for_terabytes, onnx_file_as_checkpoint,
         pickled_module_as_checkpoint, text_file_as_checkpoint,
         decompression_bomb_in_the_data, onnx_with_two_inputs, onnx_input_not_images,
         onnx_output_not_class_scores, onnx_fixed_batch_asked_for_8, onnx_class_names_not_json,
         onnx_file_asked_to_run_in_torch, precision_asked_of_an_onnx_file,
         compare_across_runtimes, cpu_device_with_a_gpu_provider, cuda_graphs_on_the_cpu,
         unknown_stage_runtime, data_as_a_path_with_the_data_option,
         architecture_search_file_given_to_run, architecture_search_file_given_to_search,
         recipe_given_to_arch_search, data_yaml_with_a_list_for_a_number]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_bad_input_ends_in_one_error_line_and_changes_nothing(case, tmp_path,
                                                                tiny_checkpoint, tiny_data):
    work = tmp_path / "work"
    work.mkdir()
    args, fragments = case(work, tiny_checkpoint, tiny_data)
    before = {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    code, output = run_cli(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    after = {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    assert after == before, sorted(set(after) ^ set(before))  # no file changed, none left
