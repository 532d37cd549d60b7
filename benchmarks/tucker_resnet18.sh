#!/usr/bin/env bash
# Does Tucker-2 decomposition pay on a trained dense-conv model? On torchvision resnet18
# trained from scratch on TrashNet (128 px, 6 classes), three recipes with the same 12-epoch
# fine-tune: decompose alone, prune alone to the MACs the decomposition reached, decompose
# followed by pruning, and prune alone to the MACs of that. Prints each run's table (val macro F1 after the fine-tune),
# then the batch-1 speed-up of each final ONNX model over the float32 baseline, timed
# interleaved with it in one sitting (compress retime, 3 rounds).
#
#   bash benchmarks/tucker_resnet18.sh        # from the repository root, ../shared beside it
#
# The baseline trains first when runs/resnet18/last.safetensors is absent (80 epochs, about
# 30 min on 2 CPU cores, alone on the machine). One seed (42): a single draw of val F1.
#
# Reproduces: Tucker-2 pays on a dense-conv model but not over pruning at equal MACs
# (docs/results.md, "Decomposition"; benchmarks/RESULTS.md, "Decomposition", 2026-11-29).
# Run time on the 2-core VM: the resnet18's training about 30 min when absent; the four
# recipe runs and the re-timing not timed.
# Output: each run's table and the re-timed speed-ups on stdout; the runs under runs/r18_*.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f runs/resnet18/last.safetensors ]; then
  compress train --model resnet18 --data recipes/data/trashnet.yaml --epochs 80 --out runs/resnet18
fi
compress run recipes/resnet18_tucker.yaml --out runs/r18_tucker --resume
kept=$(python - <<'PY'
import compress
records = compress.read_run("runs/r18_tucker")
print(f"{records[1].macs / records[0].macs:.4f}")  # decompose's MACs / the input's
PY
)
echo "prune alone to the decomposition's MACs: target_macs=$kept"
compress run recipes/resnet18_prune.yaml --set "stages.0.target_macs=$kept" --out runs/r18_prune --resume
compress run recipes/resnet18_tucker_prune.yaml --out runs/r18_tucker_prune --resume
kept=$(python - <<'PY'
import compress
records = compress.read_run("runs/r18_tucker_prune")
print(f"{records[2].macs / records[0].macs:.4f}")  # decompose + prune's MACs / the input's
PY
)
echo "prune alone to the MACs of decompose + prune: target_macs=$kept"
compress run recipes/resnet18_prune.yaml --set "stages.0.target_macs=$kept" --out runs/r18_prune_more --resume
[ -f runs/r18_baseline.onnx ] || compress export runs/resnet18/last.safetensors --out runs/r18_baseline.onnx
compress retime runs/r18_baseline.onnx \
  tucker=runs/r18_tucker/stages/03-export/model.onnx \
  prune=runs/r18_prune/stages/03-export/model.onnx \
  tucker+prune=runs/r18_tucker_prune/stages/04-export/model.onnx \
  prune_more=runs/r18_prune_more/stages/03-export/model.onnx --rounds 3
