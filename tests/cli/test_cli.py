"""The commands end to end on tiny data, and every bad input the foundation promises to name."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from conftest import TINY_MNV3, assert_user_error, run_cli, write_train_yamls

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.data.config import load_data_config
from compress.models import build_model


def test_eval_json_has_the_promised_keys(tiny_checkpoint, tiny_data):
    code, output = run_cli(["eval", tiny_checkpoint, "--data", tiny_data, "--json"])
    assert code == 0, output
    metrics = json.loads(output)
    for key in ("macro_f1", "accuracy", "per_class", "num_images", "confusion_matrix"):
        assert key in metrics
    assert metrics["num_images"] == 12 and set(metrics["per_class"]) == {"blue", "green", "red"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 12


def test_eval_text_report(tiny_checkpoint, tiny_data):
    code, output = run_cli(["eval", tiny_checkpoint, "--data", tiny_data])
    assert code == 0 and "macro F1" in output and "confusion matrix" in output


def test_inspect_prints_layers_params_macs_and_classes(tiny_checkpoint):
    code, output = run_cli(["inspect", tiny_checkpoint, "--json"])
    assert code == 0, output
    summary = json.loads(output)
    model = build_model({"kind": "kindle", "config": TINY_MNV3})
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    assert summary["macs"] == sum(layer["macs"] for layer in summary["layers"]) > 0
    assert summary["classes"] == ["blue", "green", "red"] and summary["input_size"] == 32
    code, text = run_cli(["inspect", tiny_checkpoint])
    assert "MACs" in text and "model.7.linear" in text


def test_import_turns_a_teams_best_pt_into_a_checkpoint(tmp_path, tiny_data):
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MNV3))
    trained = build_model({"kind": "kindle", "config": TINY_MNV3}).eval()
    torch.save(trained.state_dict(), tmp_path / "best.pt")
    out = tmp_path / "imported.safetensors"
    code, output = run_cli(["import", "--model", model_yaml, "--weights", tmp_path / "best.pt",
                         "--data", tiny_data, "--input-size", 32, "--out", out])
    assert code == 0, output
    from compress.checkpoint import load_checkpoint

    loaded = load_checkpoint(out)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.model(x), trained(x))
    assert loaded.classes == ["blue", "green", "red"]


def test_import_refuses_a_class_count_the_model_cannot_predict(tmp_path):
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MNV3))
    torch.save(build_model({"kind": "kindle", "config": TINY_MNV3}).state_dict(),
               tmp_path / "best.pt")
    assert_user_error(["import", "--model", model_yaml, "--weights", tmp_path / "best.pt",
                        "--classes", "a,b", "--out", tmp_path / "x.safetensors"],
                       "3 outputs", "2 classes")


def test_train_command_writes_a_checkpoint(tmp_path, tiny_data):
    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, EPOCHS=2, INIT_LR=0.05,
                                              GRAD_CLIP=1.0)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml,
                         "--out", tmp_path / "run"])
    assert code == 0, output
    assert (tmp_path / "run" / "best.safetensors").is_file()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2
    for row in history:  # no loader workers: the images are read between the steps
        assert 0 < row["loader_wait_share"] < 1 and row["train_images_per_s"] > 0
        assert f"{row['train_images_per_s']:.0f} img/s" in output
    # The last epoch is the result (the default --keep last), and the output names it.
    assert f"kept epoch 2: val macro F1 {history[-1]['val_macro_f1']:.4f}" in output
    assert str(tmp_path / "run" / "last.safetensors") in output


def test_train_distils_from_a_teacher_and_refuses_one_before_any_work(tmp_path, tiny_data,
                                                                      tiny_checkpoint):
    from compress.checkpoint import load_checkpoint

    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, INIT_LR=0.05)
    command = ["train", "--model", model_yaml, "--data", data_yaml]
    base = load_checkpoint(tiny_checkpoint)
    other = save_checkpoint(tmp_path / "other.safetensors", Checkpoint(
        base.model, base.model_spec, list(reversed(base.classes)), base.input_size))
    assert_user_error(command + ["--teacher", other, "--out", tmp_path / "refused"],
                      "--teacher", "its classes ['red', 'green', 'blue'] are not")
    assert not (tmp_path / "refused").exists()
    assert_user_error(command + ["--distill-alpha", 0.8, "--out", tmp_path / "refused"],
                      "--distill-alpha only apply with --teacher")
    assert not (tmp_path / "refused").exists()

    runs = {}
    for name, extra in [("plain", []), ("distilled", ["--teacher", tiny_checkpoint,
                                                      "--distill-alpha", 0.8])]:
        code, output = run_cli(command + extra + ["--out", tmp_path / name])
        assert code == 0, output
        runs[name] = load_checkpoint(tmp_path / name / "last.safetensors")
    assert runs["distilled"].info["distill"] == {"teacher": str(tiny_checkpoint),
                                                 "alpha": 0.8, "temperature": 4.0,
                                                 "mode": "soft_hard"}
    assert "distill" not in runs["plain"].info
    # Same seed, same batches: only the teacher's soft targets can move the weights apart.
    plain, distilled = runs["plain"].model.state_dict(), runs["distilled"].model.state_dict()
    assert any(not torch.equal(plain[key], distilled[key]) for key in plain)


def test_missing_data_folder(tiny_checkpoint, tmp_path):
    assert_user_error(["eval", tiny_checkpoint, "--data", tmp_path / "nope"],
                       "nope", "not found")


def test_split_folder_without_class_folders(tiny_checkpoint, tmp_path):
    (tmp_path / "root" / "val").mkdir(parents=True)
    assert_user_error(["eval", tiny_checkpoint, "--data", tmp_path / "root"],
                       "no class folders")


def test_unreadable_image_is_named(tiny_checkpoint, tmp_path):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "data", {"val": 2})
    (root / "val" / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    assert_user_error(["eval", tiny_checkpoint, "--data", root], "broken.jpg",
                       "cannot be read")


def test_unknown_module_in_model_yaml(tmp_path, tiny_data):
    config = json.loads(json.dumps(TINY_MNV3))
    config["backbone"][2][1] = "FancyBlock"
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(config))
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"DATA_PATH": str(tiny_data), "IMG_SIZE": 32}))
    assert_user_error(["train", "--model", model_yaml, "--data", data_yaml,
                        "--out", tmp_path / "run"], "FancyBlock", "backbone.2")


def test_checkpoint_classes_differ_from_the_data(tmp_path, tiny_model_spec, tiny_data):
    path = save_checkpoint(tmp_path / "abc.safetensors",
                           Checkpoint(build_model(tiny_model_spec), tiny_model_spec,
                                      ["a", "b", "c"], 32))
    assert_user_error(["eval", path, "--data", tiny_data], "differ")


def test_competition_data_yaml_is_read_and_unknown_keys_warned(tmp_path, caplog):
    path = tmp_path / "taco_im156.yaml"
    path.write_text("DATA_PATH: /opt/ml/data/\nDATASET: TACO\nIMG_SIZE: 156\n"
                    "AUG_TRAIN: randaugment_train\nAUG_TEST: simple_augment_test\n"
                    "AUG_TRAIN_PARAMS:\n  n_select: 3\n  level: null\nAUG_TEST_PARAMS: null\n"
                    "BATCH_SIZE: 64\nEPOCHS: 200\nVAL_RATIO: 0.1\nINIT_LR: 0.1\nFP16: True\n"
                    "SEED: 2021\nWNB_ENTITY: team\nWNB_PROJECT: p\n")
    with caplog.at_level(logging.WARNING):
        config = load_data_config(path)
    assert (config.img_size, config.epochs, config.seed, config.val_ratio) == (156, 200, 2021, 0.1)
    assert config.aug_train_params == {"n_select": 3, "level": None}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "WNB_ENTITY" in warned and "DATASET" not in warned


def test_bad_data_yaml_value(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("DATA_PATH: x\nAUG_TRAIN: cutmix\n")
    from compress.errors import UserError

    with pytest.raises(UserError, match="AUG_TRAIN"):
        load_data_config(path)


def test_finetune_and_export_commands(tmp_path, tiny_checkpoint, tiny_data):
    out = tmp_path / "ft"
    code, output = run_cli(["finetune", tiny_checkpoint, "--data", tiny_data, "--freeze",
                         "all-but-classifier", "--epochs", 1, "--batch-size", 8, "--out", out])
    assert code == 0, output
    from compress.checkpoint import load_checkpoint

    tuned = load_checkpoint(out / "finetuned.safetensors")
    original = load_checkpoint(tiny_checkpoint)
    assert torch.equal(tuned.model.model[0].conv.weight, original.model.model[0].conv.weight)
    assert not torch.equal(tuned.model.model[7].linear.weight, original.model.model[7].linear.weight)
    code, output = run_cli(["export", out / "finetuned.safetensors", "--out", tmp_path / "m.onnx",
                         "--fp16", "--data", tiny_data])
    assert code == 0, output
    assert (tmp_path / "m.onnx").is_file() and '"fp16"' in output


def test_finetune_distils_from_another_teacher_with_the_same_classes(tmp_path,
                                                                    tiny_checkpoint, tiny_data):
    from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    base = load_checkpoint(tiny_checkpoint)
    other = save_checkpoint(tmp_path / "other.safetensors", Checkpoint(
        base.model, base.model_spec, list(reversed(base.classes)), base.input_size))
    command = ["finetune", tiny_checkpoint, "--data", tiny_data, "--epochs", 1,
               "--batch-size", 8, "--grad-clip", 1.0]
    assert_user_error(command + ["--teacher", other, "--out", tmp_path / "a"], "--teacher",
                      "its classes ['red', 'green', 'blue'] are not")
    assert_user_error(command + ["--teacher", tmp_path / "nope.safetensors", "--out",
                                 tmp_path / "a"], "--teacher: checkpoint", "not found")
    assert not (tmp_path / "a").exists()
    code, output = run_cli(command + ["--teacher", tiny_checkpoint, "--out", tmp_path / "b"])
    assert code == 0, output
    details = json.loads((tmp_path / "b" / "finetune.json").read_text())
    assert details["distill"] == {"temperature": 4.0, "alpha": 0.5, "mode": "soft_hard",
                                  "teacher": "teacher"}


def test_a_second_finetune_with_other_settings_into_the_same_out_is_refused(tmp_path,
                                                                           tiny_checkpoint,
                                                                           tiny_data):
    out = tmp_path / "ft"
    first = ["finetune", tiny_checkpoint, "--data", tiny_data, "--epochs", 1, "--batch-size", 8,
             "--out", out]
    code, output = run_cli(first)
    assert code == 0, output
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_user_error(first[:-2] + ["--lr", 0.001, "--out", out], str(out),
                      "started with other inputs")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage")
    assert_user_error(["export", path, "--out", tmp_path / "x.onnx"], "model.onnx")
