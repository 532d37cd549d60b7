"""Training data at scale: peak memory, images per second and time to the first
batch of a one-epoch `compress finetune` on 2,000 and 20,000 synthetic 512 x 384 JPEGs,
with the cache cold and warm, under fork, spawn and `torchrun --nproc_per_node 2`, and
today's loader (an earlier commit, checked out beside the repository) on the 2,000.

    python benchmarks/data_scale.py --out runs/data_scale
    python benchmarks/data_scale.py --out runs/data_scale --images 20000 --old-commit 9e683c4

The images are made from TrashNet's train photos (flipped, shifted, brightness and JPEG
quality varied; never committed) under OUT/images; val is TrashNet's val. Memory is the PSS
of the command and every process under it, summed (shared pages counted once), sampled
every 0.25 s; the peak is reported. Images per second are the epoch's training images over
its training time; the first batch is timed from the command's start. Run nothing else
heavy meanwhile: the figures are wall-clock on a shared machine.

Reproduces: the decoded-image cache's memory and speed at 20,000 images (docs/results.md,
"Data at scale"; benchmarks/RESULTS.md, "Data cache and data scale").
Run time on the 2-core VM: a run takes about 2-4 min (one epoch of 20,000 images 211-215 s,
2026-12-06; 19-149 s a run on the Intel Xeon, 2026-12-01), making the 20,000 images about
40 s; the default set of runs was not timed as a whole.
Output: each run's figures as a JSON line on stdout, OUT/results.json (kept across
invocations) and a table of every run on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRASHNET = REPO.parent / "shared" / "data" / "trashnet"
# `python -m compress` under the spawn start method.
SPAWN_LAUNCH = ("import multiprocessing as mp; mp.set_start_method('spawn', force=True); "
                "import runpy; runpy.run_module('compress', run_name='__main__', alter_sys=True)")


def _variant(job: tuple[Path, Path, int]) -> None:
    from PIL import Image, ImageEnhance

    source, target, seed = job
    rng = random.Random(seed)
    with Image.open(source) as image:
        image = image.convert("RGB").resize((512, 384))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    dx, dy = rng.randint(-24, 24), rng.randint(-18, 18)
    image = image.rotate(0, translate=(dx, dy), fillcolor=(128, 128, 128))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image.save(target, quality=rng.randint(85, 95))


def make_images(folder: Path, count: int) -> Path:
    """FOLDER/train with `count` JPEGs in TrashNet's classes (made once), FOLDER/val a link to
    TrashNet's val."""
    train = folder / "train"
    sources = sorted(p for p in (TRASHNET / "train").rglob("*") if p.is_file())
    if len(list(train.rglob("*.jpg"))) != count:
        shutil.rmtree(train, ignore_errors=True)
        jobs = []
        for index in range(count):
            source = sources[index % len(sources)]
            target = train / source.parent.name / f"{index:07d}.jpg"
            jobs.append((source, target, index))
        for name in {source.parent.name for source in sources}:
            (train / name).mkdir(parents=True, exist_ok=True)
        started = time.time()
        with Pool(os.cpu_count()) as pool:
            for done, _ in enumerate(pool.imap_unordered(_variant, jobs, chunksize=64), 1):
                if done % 5000 == 0:
                    print(f"  made {done:,}/{count:,} images ({time.time() - started:.0f} s)",
                          flush=True)
    if not (folder / "val").exists():
        (folder / "val").symlink_to(TRASHNET / "val")
    return folder


def linked_subset(source: Path, folder: Path, count: int) -> Path:
    """FOLDER/train with the first `count` images SOURCE/train made (every class; links)."""
    files = sorted((source / "train").rglob("*.jpg"), key=lambda path: path.name)[:count]
    if len(list((folder / "train").rglob("*.jpg"))) != count:
        shutil.rmtree(folder, ignore_errors=True)
        for path in files:
            target = folder / "train" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
        (folder / "val").symlink_to(TRASHNET / "val")
    return folder


def _children(pid: int) -> list[int]:
    found, queue = [], [pid]
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    while queue:
        current = queue.pop()
        found.append(current)
        queue += parents.get(current, [])
    return found


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measured_run(name: str, command: list[str], env: dict[str, str], out: Path,
                 log: Path) -> dict:
    """Runs `command`, sampling the PSS of its process tree; its figures from history.json."""
    started = time.time()
    with open(log, "w") as stream:
        # `python -m` puts the working folder first on sys.path: run in the checkout tested.
        process = subprocess.Popen(command, cwd=env["PYTHONPATH"], env=env, stdout=stream,
                                   stderr=subprocess.STDOUT)
        peak, processes = 0, 0

        def sample():
            nonlocal peak, processes
            while process.poll() is None:
                pids = _children(process.pid)
                peak, processes = max(peak, _pss(pids)), max(processes, len(pids))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        code = process.wait()
        sampler.join()
    wall = time.time() - started
    if code != 0:
        print(log.read_text()[-3000:])
        raise SystemExit(f"{name}: exit code {code} (log: {log})")
    history = json.loads((out / "train" / "history.json").read_text())
    epoch = history[0]
    first_batch = epoch.get("first_batch_at")
    images = epoch.get("train_images_per_s")
    return {"run": name, "peak_pss_gib": peak / 2**30, "processes": processes,
            "wall_s": wall, "first_batch_s": None if first_batch is None
            else first_batch - started,
            # The earlier commit records only the whole epoch (training and val).
            "train_images_per_s": images, "epoch_s": epoch["seconds"],
            "val_macro_f1": [row["val_macro_f1"] for row in history],
            "cache": [line for line in log.read_text().splitlines()
                      if line.startswith("image cache:")]}


def old_checkout(commit: str, folder: Path) -> Path:
    if not folder.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=REPO,
                       check=True, capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/data_scale"))
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--checkpoint", type=Path,
                        default=REPO / "checkpoints" / "mnv3_trashnet.safetensors",
                        help="the model fine-tuned [default: the shipped baseline]")
    parser.add_argument("--old-commit", default=None,
                        help="Also run today's loader from this commit on the small folder.")
    parser.add_argument("--runs", default="trashnet_old,trashnet_new,old,small_cold,cold,warm,"
                        "spawn_cold,spawn_warm,torchrun_cold,torchrun_warm,stream")
    args = parser.parse_args()
    if not TRASHNET.is_dir():
        raise SystemExit(f"needs TrashNet at {TRASHNET}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    big = make_images(out / "images", args.images)
    small = linked_subset(big, out / f"images_{args.small}", args.small)
    # The checkpoint as shipped: its recorded held-out images are not among the made ones,
    # so finetune draws a held-out split of its own from them (and says so in the log).
    finetune = ["finetune", str(args.checkpoint), "--epochs", "1", "--batch-size", "64",
                "--lr", "0.005", "--device", "cpu"]
    base_env = {**os.environ}
    base_env.pop("COMPRESS_IMAGE_CACHE", None)

    def env(cache: str, threads: int | None = None, pythonpath: Path = REPO) -> dict:
        values = {**base_env, "COMPRESS_CACHE_DIR": str(out / "cache" / cache),
                  "PYTHONPATH": str(pythonpath)}
        if threads:
            values["OMP_NUM_THREADS"] = str(threads)
        return values

    python = [sys.executable]
    spawn = [sys.executable, "-c", SPAWN_LAUNCH]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    # TrashNet itself, the shipped checkpoint (its held-out images included), two epochs: the
    # same seed through today's loader and the cache should end at the same macro F1.
    trashnet = ["finetune", str(args.checkpoint), "--epochs", "2", "--batch-size", "64",
                "--lr", "0.005", "--device", "cpu"]
    plans = {
        "trashnet_new": (python + ["-m", "compress"], TRASHNET, env("trashnet"), trashnet),
        "small_cold": (python + ["-m", "compress"], small, env("small")),
        "cold": (python + ["-m", "compress"], big, env("fork")),
        "warm": (python + ["-m", "compress"], big, env("fork")),
        "spawn_cold": (spawn, big, env("spawn")),
        "spawn_warm": (spawn, big, env("spawn")),
        "torchrun_cold": (torchrun + ["-m", "compress"], big, env("torchrun", threads=1)),
        "torchrun_warm": (torchrun + ["-m", "compress"], big, env("torchrun", threads=1)),
        # No cache: every image decoded, padded and resized every epoch in the loader's
        # worker processes (what `auto` falls back to when neither disk nor memory fit).
        "stream": (python + ["-m", "compress"], big, env("stream"), finetune + ["--cache", "stream"]),
    }
    if args.old_commit:
        old = old_checkout(args.old_commit, out / "old_checkout")
        plans["old"] = (python + ["-m", "compress"], small, env("old", pythonpath=old))
        plans["trashnet_old"] = (python + ["-m", "compress"], TRASHNET,
                                 env("old", pythonpath=old), trashnet)
    names = args.runs.split(",")
    for name in names:
        if name in plans and (name.endswith("_cold") or name in ("cold", "stream")):
            shutil.rmtree(plans[name][2]["COMPRESS_CACHE_DIR"], ignore_errors=True)
    # Earlier results of runs not repeated now are kept (the table shows every run).
    previous = out / "results.json"
    results = [r for r in (json.loads(previous.read_text()) if previous.exists() else [])
               if r["run"] not in names]
    for name in names:
        if name not in plans:
            continue
        launcher, data, run_env, *command_args = plans[name]
        run_out = out / "runs" / name
        shutil.rmtree(run_out, ignore_errors=True)
        command = launcher + (command_args[0] if command_args else finetune) + [
            "--data", str(data), "--out", str(run_out)]
        print(f"{name}: {' '.join(command[-12:])}", flush=True)
        result = measured_run(name, command, run_env, run_out, out / f"{name}.log")
        result["images"] = sum(1 for path in (data / "train").rglob("*") if path.is_file())
        results.append(result)
        print("  " + json.dumps(result), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    # Epoch images/s (train images over the whole epoch, val included) is the figure the
    # earlier commit records too.
    print("\n| run | images | peak PSS | processes | first batch | train images/s | "
          "epoch | epoch images/s | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        first = "n/a" if r["first_batch_s"] is None else f"{r['first_batch_s']:.1f} s"
        speed = "n/a" if r["train_images_per_s"] is None else f"{r['train_images_per_s']:.0f}"
        print(f"| {r['run']} | {r['images']:,} | {r['peak_pss_gib']:.2f} GiB | "
              f"{r['processes']} | {first} | {speed} | {r['epoch_s']:.0f} s | "
              f"{r['images'] / r['epoch_s']:.0f} | {r['wall_s']:.0f} s |")
    print("val macro F1 by epoch: " + "; ".join(
        f"{r['run']} {', '.join(f'{f1:.4f}' for f1 in r['val_macro_f1'])}" for r in results))


if __name__ == "__main__":
    main()
