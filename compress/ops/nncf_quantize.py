"""INT8 by OpenVINO's own post-training quantisation (NNCF) of an ONNX file: NNCF's ONNX
backend writes a QDQ file that ONNX Runtime and OpenVINO both run, calibrated on the images
given. The quantize stage then times and checks it like ONNX Runtime's own INT8 file.

NNCF runs in a process of its own: importing it loads OpenVINO, and a quantisation in a
process where OpenVINO had run ended in a segmentation fault (OpenVINO 2026.4, torch 2.14).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compress.errors import StageFailed
from compress.fileio import atomic_path

NNCF_HINT = "pip install -e '.[openvino]'"


def nncf_problem() -> str | None:
    """None where NNCF is installed, else why not and how to install it."""
    if importlib.util.find_spec("nncf") is None:
        return f"NNCF (OpenVINO's quantiser) is not installed ({NNCF_HINT})"
    return None


def quantize_with_nncf(float_path: Path, out_path: Path, images: np.ndarray,
                       excluded_nodes: list[str], preset: str) -> None:
    """Write `float_path` quantised by NNCF to `out_path`: activations calibrated on
    `images` (N, C, H, W), `excluded_nodes` kept in float32, NNCF's `preset`
    (performance: symmetric activations; mixed: asymmetric)."""
    with tempfile.TemporaryDirectory() as folder:
        calibration = Path(folder) / "images.npy"
        np.save(calibration, np.ascontiguousarray(images, dtype=np.float32))
        done = subprocess.run([sys.executable, "-m", __name__, str(float_path), str(out_path),
                               str(calibration), json.dumps(excluded_nodes), preset],
                              capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise StageFailed(f"quantize: NNCF failed: {lines[-1]}")


def _quantize(float_path: str, out_path: str, calibration: str, excluded: str,
              preset: str) -> None:
    import nncf
    import onnx

    model = onnx.load(float_path)
    input_name = model.graph.input[0].name
    images = np.load(calibration)
    dataset = nncf.Dataset([images[i:i + 1] for i in range(len(images))],
                           lambda image: {input_name: image})
    names = json.loads(excluded)
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset(preset),
                              target_device=nncf.TargetDevice.CPU, subset_size=len(images),
                              ignored_scope=nncf.IgnoredScope(names=names) if names else None)
    with atomic_path(out_path) as tmp:
        onnx.save(quantized, str(tmp))


if __name__ == "__main__":
    _quantize(*sys.argv[1:])
