"""Checkpoints are written atomically beside their target, sealed with a checksum, and survive
a kill at any moment of a save, also when the temporary directory is another filesystem."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from transformer_mt.formats.lightning import INTEGRITY_KEY, content_digest, load_checkpoint
from transformer_mt.training.checkpoint_io import AtomicCheckpointIO
from transformer_mt.utils.io import TMP_MARK
from transformer_mt.utils.startup import preflight

from .conftest import ROOT, run_python

KILL_SCRIPT = Path(__file__).with_name("kill_during_save.py")


def test_the_trainer_config_saves_and_loads_through_atomic_checkpoint_io(train_cfg) -> None:
    trainer = instantiate(train_cfg().trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_every_checkpoint_of_a_run_is_sealed_with_its_content_checksum(tiny_run: Path) -> None:
    names = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert {"last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt"} <= set(names)
    assert not [n for n in names if TMP_MARK in n]  # nothing left behind by the saves
    for path in (tiny_run / "checkpoints").glob("*.ckpt"):
        raw = torch.load(path, map_location="cpu", weights_only=True)  # read independently
        assert raw[INTEGRITY_KEY]["sha256"] == content_digest(raw), path.name
        assert load_checkpoint(path)["global_step"] in (2, 4)


def test_a_save_replaces_the_file_in_its_own_directory(tiny_run: Path, tmp_path: Path) -> None:
    """The new file is renamed over the old one (a new inode, same directory), never written
    in place; its mode is what a plain open() gives."""
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    inode = target.stat().st_ino
    checkpoint = load_checkpoint(tiny_run / "checkpoints" / "last.ckpt")
    AtomicCheckpointIO().save_checkpoint(checkpoint, target)
    assert target.stat().st_ino != inode
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert load_checkpoint(target)["global_step"] == checkpoint["global_step"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no tmpfs at /dev/shm")
def test_killing_a_saving_process_never_breaks_last_ckpt(tiny_run: Path, tmp_path: Path) -> None:
    """SIGKILL at random moments of back-to-back saves, TMPDIR on tmpfs (another filesystem
    than the run directory: where Lightning's own save degrades to a copy over last.ckpt)."""
    process = run_python(
        str(KILL_SCRIPT), str(tiny_run / "checkpoints" / "last.ckpt"), str(tmp_path),
        "--trials", "6", "--seed", "1", env={"TMPDIR": "/dev/shm"},
    )  # fmt: skip
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert report["trials"] == 6 and report["loads_ok"] == 6, report
    assert report["killed_mid_save"] >= 1, report  # the kills did land inside saves
    assert report["leftovers_after_cleanup"] == 0 and report["tmpdir_orphans"] == 0, report
    # and the final file still loads here, in another process, verified
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 4
    assert str(ROOT) in str(KILL_SCRIPT)


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(train_cfg) -> None:
    """Only those whose process is gone: a save in progress elsewhere keeps its file."""
    cfg = train_cfg()
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale = folder / f".last.ckpt{TMP_MARK}{host}-{dead.pid}-x1y2z3"
    alive = folder / f".last.ckpt{TMP_MARK}{host}-{os.getpid()}-a1b2c3"
    for path in (stale, alive):
        path.write_bytes(b"half a checkpoint")
    preflight(cfg)  # what train.py runs at start
    assert not stale.exists() and alive.exists()
