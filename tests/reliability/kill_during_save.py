"""Kill a process that saves a real checkpoint over and over, at random moments; check the file.

    python tests/reliability/kill_during_save.py CHECKPOINT TARGET_DIR --trials 20 [--io lightning]

Copies CHECKPOINT to TARGET_DIR/last.ckpt, then per trial forks a child that saves it there
back to back through the chosen CheckpointIO (``atomic``: this project's; ``lightning``:
Lightning's own `TorchCheckpointIO`), kills it with SIGKILL after a random delay (uniform over
two save durations) and checks that last.ckpt still loads (weights-only, checksum verified).
Leftover temporary files are counted, then removed as the next start would. Prints one JSON
object. Run it with TMPDIR on another filesystem than TARGET_DIR (``TMPDIR=/dev/shm``) to
reproduce the setting in which Lightning's save copies over the old file. Used by
tests/reliability and benchmarks/reliability.py; the imports happen once, in this process,
and every child is a fork of it (single-threaded torch, so forking is safe).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from transformer_mt.formats.lightning import load_checkpoint
from transformer_mt.training.checkpoint_io import AtomicCheckpointIO
from transformer_mt.utils.io import TMP_MARK, remove_stale_temporaries


def _save_forever(io: Any, checkpoint: dict, target: Path, started: int) -> None:
    """The child: say it started, then save until killed."""
    try:
        os.write(started, b"1")
        while True:
            io.save_checkpoint(checkpoint, target)
    finally:
        os._exit(1)  # never return into the parent's code


def _trial(io: Any, checkpoint: dict, target: Path, delay: float) -> dict[str, Any]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _save_forever(io, checkpoint, target, write)
    os.close(write)
    os.read(read, 1)
    os.close(read)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    leftovers = [p for p in target.parent.iterdir() if TMP_MARK in p.name]
    try:
        load_checkpoint(target)
        error = None
    except Exception as err:  # noqa: BLE001 - any failure to load is the outcome measured
        error = f"{type(err).__name__}: {err}"
    return {
        "delay_s": round(delay, 4),
        "size_bytes": target.stat().st_size if target.exists() else None,
        "loads": error is None,
        "error": error,
        "leftovers": len(leftovers),
        "removed": len(remove_stale_temporaries(target.parent)),
    }


def _orphans(before: set[str]) -> list[Path]:
    """Files a killed save left in the system temporary directory (Lightning's fsspec)."""
    folder = Path(tempfile.gettempdir())
    return [folder / n for n in sorted(set(os.listdir(folder)) - before) if n.startswith("tmp")]


def run(source: Path, folder: Path, trials: int, io_name: str, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(source)
    io = AtomicCheckpointIO() if io_name == "atomic" else TorchCheckpointIO()
    target = folder / "last.ckpt"
    shutil.copyfile(source, target)
    start = time.perf_counter()
    io.save_checkpoint(checkpoint, target)
    save_seconds = time.perf_counter() - start
    before = set(os.listdir(tempfile.gettempdir()))
    rng = random.Random(seed)
    results = []
    for _ in range(trials):
        results.append(_trial(io, checkpoint, target, rng.uniform(0, 2 * save_seconds)))
        if not results[-1]["loads"]:
            shutil.copyfile(source, target)  # each trial starts from a good last.ckpt
    orphans = _orphans(before)
    orphan_bytes = sum(p.stat().st_size for p in orphans)
    for path in orphans:
        path.unlink()
    return {
        "io": io_name,
        "checkpoint_bytes": source.stat().st_size,
        "save_seconds": round(save_seconds, 4),
        "tmpdir": tempfile.gettempdir(),
        "same_filesystem": os.stat(tempfile.gettempdir()).st_dev == os.stat(folder).st_dev,
        "trials": trials,
        "loads_ok": sum(r["loads"] for r in results),
        "killed_mid_save": sum(r["leftovers"] > 0 for r in results),
        "leftovers_after_cleanup": len([p for p in folder.iterdir() if TMP_MARK in p.name]),
        "tmpdir_orphans": len(orphans),
        "tmpdir_orphan_bytes": orphan_bytes,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("target_dir", type=Path)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--io", choices=("atomic", "lightning"), default="atomic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(args.checkpoint, args.target_dir, args.trials, args.io, args.seed)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
