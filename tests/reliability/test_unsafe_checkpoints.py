"""A crafted checkpoint whose unpickling would create a file never runs, through any entry
point, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which turns torch's default off); the
error says the file is unsafe and does not suggest loading it with weights_only=False."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from .conftest import run_python


class Payload:
    """Unpickled, this opens (creates) `marker`: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """Looks like a training checkpoint, but its hyper-parameters are the payload."""
    torch.save(
        {"state_dict": {"model.w": torch.zeros(2)}, "hyper_parameters": Payload(marker),
         "tokenizer": {}, "global_step": 1, "epoch": 0},
        path,
    )  # fmt: skip
    return path


def commands(ckpt: Path, tmp: Path) -> dict[str, list[str]]:
    source = tmp / "source.txt"
    source.write_text("a dog sees the cat.\n")
    runs = tmp / "runs"
    return {
        "train.py": ["train.py", f"ckpt_path={ckpt}", f"hydra.run.dir={runs / 'train'}",
                     f"paths.data_dir={tmp / 'data'}", f"paths.cache_dir={tmp / 'cache'}"],
        "evaluate.py": ["evaluate.py", f"ckpt_path={ckpt}", f"input={source}",
                        f"hydra.run.dir={runs / 'evaluate'}"],
        "translate.py": ["translate.py", f"ckpt_path={ckpt}", "text=a dog sees the cat."],
        "export.py": ["export.py", f"ckpt_path={ckpt}", f"out={tmp / 'exported'}",
                      f"hydra.run.dir={runs / 'export'}"],
        "explain.py": ["explain.py", f"ckpt_path={ckpt}", f"hydra.run.dir={runs / 'explain'}"],
    }  # fmt: skip


@pytest.fixture(scope="module")
def attempts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Every entry point run on the crafted checkpoint, all at once (each pays its imports)."""
    tmp = tmp_path_factory.mktemp("crafted")
    marker = tmp / "PAYLOAD_RAN"
    ckpt = crafted_checkpoint(tmp / "last.ckpt", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    started = {name: run_python(*args, env=env) for name, args in commands(ckpt, tmp).items()}
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return ckpt, marker, results


@pytest.mark.parametrize(
    "entry", ["train.py", "evaluate.py", "translate.py", "export.py", "explain.py"]
)
def test_the_payload_never_runs(entry: str, attempts) -> None:
    ckpt, marker, results = attempts
    result = results[entry]
    assert result.returncode != 0, result.stderr[-2000:]
    assert not marker.exists()
    assert f"{ckpt}: unsafe, refused: loading it would run code (io.open)" in result.stderr
    assert "weights_only=False" not in result.stderr + result.stdout


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The independent reference: unpickled the unsafe way, such a file does run its code."""
    marker = tmp_path / "PAYLOAD_RAN"
    torch.load(crafted_checkpoint(tmp_path / "last.ckpt", marker), weights_only=False)
    assert marker.exists()


def test_train_and_evaluate_say_it_in_one_line(attempts) -> None:
    _, _, results = attempts
    for entry in ("train.py", "evaluate.py"):
        stderr = results[entry].stderr
        assert "Traceback" not in stderr, stderr[-2000:]
        assert [line for line in stderr.splitlines() if line.startswith("error: ")], stderr


def test_lightning_own_loads_go_through_the_safe_loader(tmp_path: Path, monkeypatch) -> None:
    """``trainer.fit(ckpt_path=...)`` / ``trainer.test(ckpt_path=...)`` load through the
    Trainer's CheckpointIO: weights-only whatever the environment says, and never unsafe."""
    from transformer_mt.formats.lightning import CheckpointError
    from transformer_mt.training.checkpoint_io import AtomicCheckpointIO

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PAYLOAD_RAN"
    ckpt = crafted_checkpoint(tmp_path / "last.ckpt", marker)
    for weights_only in (None, True):
        with pytest.raises(CheckpointError, match="unsafe, refused"):
            AtomicCheckpointIO().load_checkpoint(ckpt, weights_only=weights_only)
    with pytest.raises(ValueError, match="weights_only=True only"):
        AtomicCheckpointIO().load_checkpoint(ckpt, weights_only=False)
    assert not marker.exists()
