#!/usr/bin/env bash
# Prepares what benchmarks/gpu_path.py needs on a GPU machine that has torch but not
# compress's other dependencies and no network: Python 3.12
# wheels of the missing packages in .whl/, and in .gpudata/ a copy of TrashNet and the
# default recipe's final float model (both folders kept out of git by .git/info/exclude;
# about 15 + 25 MB).
#     bash benchmarks/gpu_prepare.sh [TRASHNET_ROOT] [FINAL_MODEL]
# FINAL_MODEL: the export stage's checkpoint of a default-recipe run, made by
#     compress run recipes/mnv3_tucker.yaml --out runs/default_s42      (about 30 min here)
# Then, with .whl and .gpudata copied to the GPU machine, the command in gpu_path.py's help.
# Reproduces: no figure itself; it readies gpu_path.py's run (benchmarks/RESULTS.md, "GPU
# path").
# Run time: not timed (a download of about 15 MB and a copy of TrashNet).
# Output: .whl/ (the wheels) and .gpudata/ (TrashNet and final.safetensors), and their sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/trashnet}
final=${2:-runs/default_s42/stages/07-export/model.safetensors}
if [ ! -f "$final" ]; then
    echo "error: $final not found: run the default recipe first (see above)" >&2
    exit 2
fi
for ignored in /.whl/ /.gpudata/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done
rm -rf .whl && mkdir -p .whl
# The GPU image has torch, torchvision, onnx, onnxruntime (CPU build), numpy, scipy,
# scikit-learn, safetensors, click, pyyaml, tqdm, pillow, matplotlib; not these:
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl -c constraints.txt \
    pydantic pydantic_core annotated-types typing-inspection typing_extensions \
    torch-pruning tensorly optuna alembic SQLAlchemy Mako colorlog
rm -rf .gpudata && mkdir -p .gpudata && cp -r "$data" .gpudata/trashnet
cp "$final" .gpudata/final.safetensors
du -sh .whl .gpudata
