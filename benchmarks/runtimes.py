"""ONNX Runtime against OpenVINO on this CPU: each model's float32 ONNX file and its two INT8
files (the quantize stage's QDQ file by ONNX Runtime's quantiser and by OpenVINO's NNCF, both
calibrated on 200 train images), in both runtimes, all timed in turn in one sitting at batch 1 and at batch 8; and each runtime's top-1 agreement with
ONNX Runtime's float32 classes on the val images. Needs the openvino extra and
../shared/data/trashnet (or --data).

    python benchmarks/runtimes.py [NAME=CHECKPOINT ...] [--runs 200] [--json OUT.json]

Without models: the shipped baseline, and the default recipe's final model where
runs/default_s42 holds it (compress run recipes/mnv3_tucker.yaml --out runs/default_s42).
Speed-ups are against the first model's float32 file in ONNX Runtime, from the same turns.

Reproduces: ONNX Runtime against OpenVINO and NNCF's INT8 (docs/results.md, "Runtimes" and
"INT8"; benchmarks/RESULTS.md, "Runtimes", 2026-12-02).
Run time on the 2-core VM: not timed.
Output: a table on stdout (ms, speed-up and agreement per file, runtime and batch size);
--json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import compress

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = {"baseline": REPO / "checkpoints" / "mnv3_trashnet.safetensors",
                  "default recipe": REPO / "runs" / "default_s42" / "stages" / "07-export" /
                  "model.safetensors"}
RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("float32", "INT8 ORT", "INT8 NNCF")  # INT8 by ONNX Runtime's quantiser / NNCF


def quantized_files(checkpoint: Path, data: str, folder: Path, warmup: int
                    ) -> tuple[Path, Path, Path]:
    """The checkpoint's float32 ONNX file, its INT8 QDQ file by ONNX Runtime's quantiser and
    its INT8 file by NNCF, made by the quantize stage with the default recipe's settings
    (INT8 kept whatever its agreement: it is measured here). In a `compress run` process of
    its own: a quantisation in a process where OpenVINO had run once ended in a segmentation
    fault (OpenVINO 2026.4, torch 2.14)."""
    settings = {"exclude": ["/model/model.0/*", "/model/model.1/*"], "keep": "int8",
                "min_agreement": 0.0, "timing_runs": 10}
    recipe = {"checkpoint": str(Path(checkpoint).resolve()), "data": {"root": data},
              "bench": {"batch_sizes": [1], "warmup": warmup, "runs": 3,
                        "compare_runtimes": False},
              "stages": [{"quantize": settings},
                         {"quantize": settings | {"quantizer": "nncf"}}]}
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    subprocess.run([sys.executable, "-m", "compress", "run", str(folder / "recipe.yaml"),
                    "--out", str(folder / "run")], check=True, stdout=subprocess.DEVNULL)
    stages = folder / "run" / "stages"
    return (stages / "00-input" / "model.onnx", stages / "01-quantize" / "model_int8.onnx",
            stages / "02-quantize" / "model_int8.onnx")


def agreements(files: list[tuple[Path, str]], data: str, input_size: int) -> list[float]:
    """Each (file, runtime)'s share of val images given the first one's class."""
    val = compress.list_images(Path(data) / "val")
    classes = []
    for path, runtime in files:
        opened = compress.open_model(path, compress.RunnerOptions(runtime=runtime), input_size)
        classes.append(compress.predict_files(opened.runner, val, input_size, 32,
                                              workers=0).labels)
    return [float(np.mean(found == classes[0])) for found in classes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="NAME=CHECKPOINT")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "trashnet"))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="0: none (the test's smoke run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    problem = compress.openvino_problem()
    if problem:
        raise SystemExit(problem)
    if not Path(args.data, "val").is_dir():
        raise SystemExit(f"no data at {args.data}: give --data ROOT")
    models = dict(item.split("=", 1) for item in args.models) if args.models else \
        {name: path for name, path in DEFAULT_MODELS.items() if path.is_file()}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        entries = []  # (model, precision, runtime, file)
        files = {}
        for name, checkpoint in models.items():
            print(f"{name}: float32 export and INT8 quantisation (ONNX Runtime, NNCF) of "
                  f"{checkpoint}", flush=True)
            files[name] = quantized_files(Path(checkpoint), args.data, Path(tmp) / name,
                                          args.warmup)
        for name, checkpoint in models.items():
            mine = [(name, precision, runtime, path)
                    for precision, path in zip(PRECISIONS, files[name])
                    for runtime in RUNTIMES]
            found = agreements([(path, runtime) for *_, runtime, path in mine], args.data,
                               compress.load_checkpoint(checkpoint).input_size)
            for entry, agreed in zip(mine, found):
                results[entry[:3]] = {"top1_agreement": agreed}
            entries += mine
        input_size = compress.load_checkpoint(next(iter(models.values()))).input_size
        for batch in (1, 8):
            turn = compress.time_files_in_turn([e[3] for e in entries], [e[2] for e in entries],
                                               input_size=input_size, batch=batch,
                                               warmup=args.warmup, runs=args.runs)
            for entry, ms, ratio in zip(entries, turn.medians_ms, turn.ratios):
                results[entry[:3]][f"b{batch}"] = {"median_ms": ms, "speedup": ratio}
    first = entries[0]
    print(f"\nmedian ms and speed-up over {first[0]} float32 in ONNX Runtime, all timed in turn "
          f"({args.runs} runs each); top-1 agreement with the model's float32 ONNX Runtime "
          "classes on val")
    print(f"{'model':<16}{'precision':<10}{'runtime':<13}{'b1 ms':>8}{'b1 x':>7}"
          f"{'b8 ms':>8}{'b8 x':>7}{'agree':>8}")
    for (name, precision, runtime), row in results.items():
        print(f"{name:<16}{precision:<10}{runtime:<13}{row['b1']['median_ms']:>8.3f}"
              f"{row['b1']['speedup']:>6.2f}x{row['b8']['median_ms']:>8.3f}"
              f"{row['b8']['speedup']:>6.2f}x{row['top1_agreement']:>8.1%}")
    if args.json:
        args.json.write_text(json.dumps([{"model": k[0], "precision": k[1], "runtime": k[2],
                                          **v} for k, v in results.items()], indent=1))


if __name__ == "__main__":
    main()
