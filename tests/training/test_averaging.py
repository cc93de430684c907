"""Checkpoint averaging against a hand-computed mean."""

from pathlib import Path

import pytest
import torch

from transformer_mt.formats.lightning import average_checkpoints, last_checkpoints


def _save(path: Path, step: int, weight: list[float], extra: str = "") -> Path:
    state = {
        "w": torch.tensor(weight, dtype=torch.float32),
        "h": torch.tensor(weight, dtype=torch.float16),
        "count": torch.tensor(step, dtype=torch.long),
    }
    hparams = {"x": extra}
    torch.save({"state_dict": state, "global_step": step, "hyper_parameters": hparams,
                "tokenizer": {}}, path)  # fmt: skip
    return path


def test_average_is_the_hand_mean(tmp_path: Path) -> None:
    paths = [
        _save(tmp_path / "a.ckpt", 1, [1.0, 2.0, 0.5], "a"),
        _save(tmp_path / "b.ckpt", 2, [3.0, -2.0, 0.25], "b"),
        _save(tmp_path / "c.ckpt", 3, [5.0, 6.0, 0.0], "c"),
    ]
    out = average_checkpoints(paths)
    hand = [(1 + 3 + 5) / 3, (2 - 2 + 6) / 3, (0.5 + 0.25 + 0.0) / 3]
    torch.testing.assert_close(out["state_dict"]["w"], torch.tensor(hand))
    assert out["state_dict"]["h"].dtype == torch.float16
    torch.testing.assert_close(out["state_dict"]["h"], torch.tensor(hand, dtype=torch.float16))
    assert out["state_dict"]["count"].item() == 3  # integers come from the last checkpoint
    assert out["hyper_parameters"] == {"x": "c"}
    assert out["averaged_from"] == [str(p) for p in paths]


def test_mismatched_checkpoints_are_refused(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.ckpt", 1, [1.0, 2.0])
    b = _save(tmp_path / "b.ckpt", 2, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"b\.ckpt.*shape"):
        average_checkpoints([a, b])
    with pytest.raises(ValueError, match="no checkpoint"):
        average_checkpoints([])


def test_last_checkpoints_picks_newest_distinct_steps(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    for step in (100, 200, 300, 400):
        _save(ckpts / f"step_{step:07d}.ckpt", step, [float(step)])
    _save(ckpts / "last.ckpt", 400, [400.0])  # an alias of the newest step
    got = last_checkpoints(tmp_path, 3)
    assert [p.name for p in got] == [f"step_{s:07d}.ckpt" for s in (200, 300, 400)]
    with pytest.raises(FileNotFoundError, match=r"(?s)only 4 distinct.*step 100"):
        last_checkpoints(tmp_path, 5)
