#!/usr/bin/env bash
# The CUDA paths and GPU figures of benchmarks/RESULTS.md ("On a GPU"), on a machine with a
# GPU and compress installed:  bash benchmarks/gpu_check.sh [DATA_ROOT]
set -x
data=${1:-../shared/data/trashnet}
ckpt=checkpoints/mnv3_trashnet.safetensors
nvidia-smi --query-gpu=name,driver_version --format=csv
python -m pytest -q -m cuda tests/test_cuda.py -rs
compress bench $ckpt --provider cuda --batch 1,8,32,128 --runs 300 --no-peak
compress bench $ckpt --provider cuda --batch 1,32 --runs 300 --compile --no-peak
compress bench $ckpt --provider cpu --batch 1,32 --runs 100 --no-peak
time compress finetune $ckpt --data "$data" --epochs 3 --lr 0.01 --distill --device cuda --out /tmp/gpu_ft
compress run recipes/mnv3_tucker.yaml --data "$data" --set data.num_workers=8 --out /tmp/gpu_recipe
