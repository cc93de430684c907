"""Lightning training checkpoints as a model format: loading, averaging, rebuilding the model.

The training module (`transformer_mt.training.module.TranslationModule`) saves the Transformer's
fields under ``hyper_parameters["transformer"]``, its weights under ``state_dict`` with the
prefix ``model.``, and the SentencePiece models under ``tokenizer`` (`Tokenizer.to_state()`).
Only those keys are read, so no Lightning module (optimizer, metrics) is built to translate.

Averaging the weights of the last N checkpoints of a run (the paper averages the last 5 for
base and 20 for big, §6.1; fairseq's ``scripts/average_checkpoints.py``) smooths out the noise
of the final updates and usually gains BLEU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.formats.info import LoadedModel, ModelInfo
from transformer_mt.model import Transformer, TransformerConfig

MODEL_PREFIX = "model."

_STEP_IN_NAME = re.compile(r"step[_=]?(\d+)")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint onto the CPU (tensors and plain values only)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Average the ``state_dict`` of several checkpoints of the same model.

    Floating-point tensors are averaged in float64 and cast back to their dtype; other tensors
    (integer counters) are taken from the last checkpoint. Everything else in the result
    (hyper-parameters, tokenizer, step) is the last checkpoint's.

    Raises:
        ValueError: no paths, or checkpoints whose parameter names or shapes differ.
    """
    if not paths:
        raise ValueError("average_checkpoints: no checkpoint paths given")
    total: dict[str, torch.Tensor] = {}
    first_path, last = Path(paths[0]), {}
    for path in paths:
        last = load_checkpoint(path)
        state = last["state_dict"]
        if not total:
            total = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
            continue
        _check_same_parameters(total, state, first_path, Path(path))
        for key, value in state.items():
            total[key] = total[key] + value.double() if value.is_floating_point() else value
    final = last["state_dict"]
    averaged = {
        k: (v / len(paths)).to(final[k].dtype) if final[k].is_floating_point() else v
        for k, v in total.items()
    }
    return {**last, "state_dict": averaged, "averaged_from": [str(p) for p in paths]}


def _check_same_parameters(
    reference: dict[str, torch.Tensor], state: dict[str, torch.Tensor], ref_path: Path, path: Path
) -> None:
    if reference.keys() != state.keys():
        diff = sorted(reference.keys() ^ state.keys())
        raise ValueError(f"cannot average {path} with {ref_path}: parameter names differ: {diff}")
    for key, value in state.items():
        if value.shape != reference[key].shape:
            raise ValueError(
                f"cannot average {path} with {ref_path}: {key} has shape "
                f"{tuple(value.shape)}, expected {tuple(reference[key].shape)}"
            )


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The checkpoints of the ``n`` most recent distinct training steps under ``run_dir``.

    Steps are read from each checkpoint's ``global_step`` (``last.ckpt`` and a best-BLEU copy of
    a step count once). Returned oldest first.

    Raises:
        FileNotFoundError: fewer than ``n`` distinct steps are saved under ``run_dir``.
    """
    if n < 1:
        raise ValueError(f"average_last must be a positive integer, got {n}")
    by_step: dict[int, Path] = {}
    for path in sorted(Path(run_dir).rglob("*.ckpt")):
        step = _global_step(path)
        # prefer a file named after its step over aliases such as last.ckpt
        if step not in by_step or _STEP_IN_NAME.search(path.name):
            by_step[step] = path
    if len(by_step) < n:
        found = "\n  ".join(f"step {s}: {p}" for s, p in sorted(by_step.items())) or "none"
        raise FileNotFoundError(
            f"average_last={n} but only {len(by_step)} distinct checkpoint steps under "
            f"{run_dir}:\n  {found}"
        )
    return [by_step[s] for s in sorted(by_step)[-n:]]


def _global_step(path: Path) -> int:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if "global_step" not in checkpoint:
        raise ValueError(f"{path} has no 'global_step': not a Lightning training checkpoint")
    return int(checkpoint["global_step"])


def resolve_checkpoints(
    ckpt_path: str | Path | Sequence[str | Path], average_last: int | None
) -> list[Path]:
    """The checkpoint files that ``evaluate.py ckpt_path=... average_last=...`` means.

    - a file: that checkpoint (``average_last`` must be unset);
    - a run directory: its ``last.ckpt``, or with ``average_last=N`` its last N checkpoints;
    - a list of files: all of them, or with ``average_last=N`` the N latest of them by step.
    """
    if isinstance(ckpt_path, str | Path):
        path = Path(ckpt_path)
        if path.is_file():
            if average_last not in (None, 1):
                raise ValueError(
                    f"average_last={average_last} needs a run directory or a list of "
                    f"checkpoints; {path} is a single file"
                )
            return [path]
        if not path.is_dir():
            raise FileNotFoundError(f"ckpt_path: no such file or directory: {path}")
        if average_last is not None:
            return last_checkpoints(path, average_last)
        lasts = sorted(path.rglob("last.ckpt"))
        if not lasts:
            raise FileNotFoundError(f"no last.ckpt under {path}: give a file or average_last=N")
        return lasts[:1]
    paths = [Path(p) for p in ckpt_path]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ckpt_path: no such checkpoint(s): {', '.join(missing)}")
    if average_last is None:
        return paths
    if not 1 <= average_last <= len(paths):
        raise ValueError(f"average_last={average_last} but {len(paths)} checkpoints were given")
    return sorted(paths, key=_global_step)[-average_last:]


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> LoadedModel:
    """The eval-mode Transformer, Tokenizer and metadata saved in a loaded checkpoint dict
    (`source` names it in errors)."""
    for key in ("hyper_parameters", "state_dict", "tokenizer"):
        if key not in checkpoint:
            raise KeyError(
                f"{source}: no {key!r} entry; expected a checkpoint written by "
                "transformer_mt.training (keys hyper_parameters, state_dict, tokenizer)"
            )
    hparams = checkpoint["hyper_parameters"]
    fields = hparams.get("transformer")
    if not isinstance(fields, dict) or "src_vocab_size" not in fields:
        raise KeyError(
            f"{source}: hyper_parameters['transformer'] must hold the TransformerConfig fields "
            "including the vocabulary sizes"
        )
    model = Transformer(TransformerConfig(**fields))
    weights = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(MODEL_PREFIX)
    }
    if not weights:
        raise KeyError(f"{source}: state_dict has no '{MODEL_PREFIX}*' weights")
    model.load_state_dict(weights)
    info = ModelInfo(
        config=model.config,
        src_lang=hparams.get("src_lang"),
        tgt_lang=hparams.get("tgt_lang"),
        bleu_tokenize=hparams.get("bleu_tokenize") or "13a",
        provenance={
            "checkpoints": checkpoint.get("averaged_from") or [source],
            "global_step": checkpoint.get("global_step"),
            "train_seconds": _train_seconds(checkpoint),
        },
    )
    return LoadedModel(model.eval(), Tokenizer.from_state(checkpoint["tokenizer"]), info)


def _train_seconds(checkpoint: dict[str, Any]) -> float | None:
    """The Timer callback's training time, when the run had one."""
    timer = (checkpoint.get("callbacks") or {}).get("Timer") or {}
    seconds = (timer.get("time_elapsed") or {}).get("train")
    return None if seconds is None else round(float(seconds), 1)


def load_lightning(
    ckpt_path: str | Path | Sequence[str | Path], average_last: int | None = None
) -> LoadedModel:
    """The model that ``ckpt_path=... average_last=...`` means (see `resolve_checkpoints`),
    averaged when that is several checkpoints."""
    paths = resolve_checkpoints(ckpt_path, average_last)
    checkpoint = average_checkpoints(paths) if len(paths) > 1 else load_checkpoint(paths[0])
    return model_from_checkpoint(checkpoint, source=str(paths[-1]))
