"""Defaults that several parts of compress share, defined once."""

SEED = 42
BATCH_SIZE = 64
NUM_WORKERS = 2  # data-loading processes; this project's CI machines have 2 cores
AUG_TRAIN = "randaugment_train"
