#!/usr/bin/env bash
# The seed-to-seed spread of val macro F1 (benchmarks/RESULTS.md, "Seeds"): the default
# recipe and two peers, seeds 1-3, run side by side (their timings mean nothing; compare F1).
#   bash benchmarks/seed_spread.sh [DATA_ROOT] [OUT]      (a GPU makes this minutes, not hours)
data=${1:-../shared/data/trashnet}
out=${2:-runs/seeds}
for seed in 1 2 3; do
  python benchmarks/peers.py --data "$data" --out "$out/peers$seed" --runs 50 \
    --set seed=$seed --set data.num_workers=4 --set bench.runs=20 --set "bench.batch_sizes=[1]" \
    --only "unstructured L1 30 %" --only "torch-pruning uniform L2" > "$out.peers$seed.log" 2>&1 &
done
wait
python benchmarks/seed_table.py "$out/peers1" "$out/peers2" "$out/peers3"
