"""A damaged, truncated, empty, foreign, incomplete or non-finite checkpoint gives one error
naming the file and what is wrong: from the loader, and from train.py and evaluate.py before
any data is prepared."""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from transformer_mt.formats.lightning import CheckpointError, load_checkpoint
from transformer_mt.training.checkpoint_io import AtomicCheckpointIO


def _largest_record(path: Path) -> tuple[int, int]:
    """(offset, size) of the biggest stored tensor's bytes inside torch's zip file."""
    with zipfile.ZipFile(path) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename]
        info = max(tensors, key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def flipped(source: Path, dest: Path, count: int = 4096) -> Path:
    data = bytearray(source.read_bytes())
    offset, size = _largest_record(source)
    start = offset + max(0, size // 2 - count // 2)
    for i in range(start, start + min(count, size)):
        data[i] ^= 0xFF
    dest.write_bytes(bytes(data))
    return dest


def truncated(source: Path, dest: Path) -> Path:
    dest.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    return dest


def empty(source: Path, dest: Path) -> Path:
    dest.write_bytes(b"")
    return dest


def foreign(source: Path, dest: Path) -> Path:
    torch.save({"model": {"linear.weight": torch.zeros(2, 2)}, "epoch": 3}, dest)
    return dest


def without_hparams(source: Path, dest: Path) -> Path:
    checkpoint = load_checkpoint(source)
    del checkpoint["hyper_parameters"]
    AtomicCheckpointIO().save_checkpoint(checkpoint, dest)  # sealed: only the key is missing
    return dest


def non_finite(source: Path, dest: Path) -> Path:
    checkpoint = load_checkpoint(source)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name].view(-1)[3] = math.nan
    AtomicCheckpointIO().save_checkpoint(checkpoint, dest)
    return dest


DAMAGE: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "flipped": (flipped, r"damaged: its content does not match the checksum"),
    "truncated": (truncated, r"not a readable checkpoint \(\d+ bytes; truncated or damaged"),
    "empty": (empty, r"empty file \(0 bytes\)"),
    "foreign": (foreign, r"not a checkpoint of this project's training: no hyper_parameters, "
                         r"state_dict, tokenizer \(it holds: model, epoch\)"),
    "without_hparams": (without_hparams, r"no hyper_parameters"),
    "non_finite": (non_finite, r"tensor model\.\S+ holds NaN or infinite values"),
}  # fmt: skip


def test_flipped_bytes_inside_a_tensor_pass_torch_unnoticed(tiny_run: Path, tmp_path) -> None:
    """The independent reference: torch loads the damaged file and returns other weights, so
    only the checksum tells."""
    last = tiny_run / "checkpoints" / "last.ckpt"
    bad = flipped(last, tmp_path / "bad.ckpt")
    good = torch.load(last, weights_only=True)["state_dict"]
    damaged = torch.load(bad, weights_only=True)["state_dict"]
    assert any(not torch.equal(good[k], damaged[k]) for k in good)


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_the_loader_names_the_file_and_the_damage(kind, tiny_run: Path, tmp_path) -> None:
    make, message = DAMAGE[kind]
    bad = make(tiny_run / "checkpoints" / "last.ckpt", tmp_path / f"{kind}.ckpt")
    with pytest.raises(CheckpointError, match=rf"^{bad}: .*{message}"):
        load_checkpoint(bad)


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_train_stops_before_preparing_any_data(kind, tiny_run, train_cfg, train_entry, tmp_path):
    make, message = DAMAGE[kind]
    bad = make(tiny_run / "checkpoints" / "last.ckpt", tmp_path / f"{kind}.ckpt")
    cache = tmp_path / "fresh-cache"
    with pytest.raises(CheckpointError, match=message):
        train_entry.train(train_cfg(f"ckpt_path={bad}", f"paths.cache_dir={cache}"))
    assert not cache.exists()  # no tokenizer trained, nothing prepared


def test_evaluate_stops_before_reading_its_input(tiny_run, evaluate_entry, tmp_path) -> None:
    from .conftest import compose_config

    bad = flipped(tiny_run / "checkpoints" / "last.ckpt", tmp_path / "bad.ckpt")
    source = tmp_path / "source.txt"
    source.write_text("a dog sees the cat.\n")
    cfg = compose_config("evaluate", [f"ckpt_path={bad}", f"input={source}",
                                      f"paths.output_dir={tmp_path / 'eval'}"])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        evaluate_entry.main(cfg)
    message = str(stop.value)
    assert message.startswith(f"error: {bad}: damaged") and "Traceback" not in message
    assert not (tmp_path / "eval" / "hypotheses.txt").exists()
