"""Lightning training checkpoints as a model format: loading, verifying, averaging, rebuilding.

The training module (`transformer_mt.training.module.TranslationModule`) saves the Transformer's
fields under ``hyper_parameters["transformer"]``, its weights under ``state_dict`` with the
prefix ``model.``, and the SentencePiece models under ``tokenizer`` (`Tokenizer.to_state()`).
Only those keys are read, so no Lightning module (optimizer, metrics) is built to translate.

Safety and integrity. Every load here is ``torch.load(..., weights_only=True)`` passed
explicitly, so it holds whatever the torch version's default and even under
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (which only overrides an unset argument): a file whose
unpickling would call code is refused, with a message that does not suggest turning the
protection off. Checkpoints written by this project carry ``integrity``: a sha256 over every
value in the checkpoint (each tensor's dtype, shape and bytes, and every plain value, in order),
computed when saving (`seal`, used by `transformer_mt.training.checkpoint_io`) and checked on
every load, because torch itself does not notice changed tensor bytes. Empty, truncated,
damaged, foreign and non-finite checkpoints each give one `CheckpointError` naming the file.

Averaging the weights of the last N checkpoints of a run (the paper averages the last 5 for
base and 20 for big, §6.1; fairseq's ``scripts/average_checkpoints.py``) smooths out the noise
of the final updates and usually gains BLEU.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.formats.info import LoadedModel, ModelInfo
from transformer_mt.model import Transformer, TransformerConfig

log = logging.getLogger(__name__)

MODEL_PREFIX = "model."
INTEGRITY_KEY = "integrity"
DIGEST_ALGORITHM = "sha256-values-v1"
REQUIRED_KEYS = ("hyper_parameters", "state_dict", "tokenizer")

_STEP_IN_NAME = re.compile(r"step[_=]?(\d+)")


class CheckpointError(ValueError):
    """A checkpoint cannot be used (unreadable, unsafe, damaged or not this project's); the
    message names the file and what is wrong."""


class IncompleteCheckpointError(CheckpointError, KeyError):
    """A checkpoint dict lacks an entry (also a KeyError, which callers caught before)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would quote the message


def content_digest(checkpoint: Mapping[str, Any]) -> str:
    """sha256 over every value of `checkpoint` except its integrity entry, in order."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != INTEGRITY_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Hash `value` with its structure; tensors by dtype, shape and raw bytes."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        tensor = (tensor.to_dense() if tensor.layout != torch.strided else tensor).cpu()
        tensor = tensor.contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"M{len(value)};".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        digest.update(f"L{len(value)};".encode())
        for item in items:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r};".encode())


def seal(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """`checkpoint` plus its integrity entry (a new dict; the argument is not changed)."""
    integrity = {"algorithm": DIGEST_ALGORITHM, "sha256": content_digest(checkpoint)}
    return {**checkpoint, INTEGRITY_KEY: integrity}


def _torch_load(path: Path, mmap: bool = False) -> Any:
    """``torch.load`` weights-only onto the CPU, every failure as one sentence about `path`."""
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{path}: empty file (0 bytes), not a checkpoint: a save or copy was interrupted; "
            "use another checkpoint of the run (step_*.ckpt)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, str(err))) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({size} bytes; truncated or damaged: "
            f"{_first_sentence(err)})"
        ) from None


def _refusal(path: Path, message: str) -> str:
    """Why the weights-only unpickler stopped: a reference to code (unsafe) or bad bytes."""
    reason = message.split("WeightsUnpickler error:", 1)[-1].strip()
    unsafe = re.search(r"GLOBAL ([\w.]+)", reason)
    if unsafe or re.search(r"global|reduce|build", reason, re.IGNORECASE):
        what = f" ({unsafe.group(1)})" if unsafe else ""
        return (
            f"{path}: unsafe, refused: loading it would run code{what}; nothing in it was run. "
            "Checkpoints written by this project's training hold only tensors and plain "
            "values: do not use this file"
        )
    return f"{path}: damaged, not loaded ({reason.split('. ')[0].strip() or 'bad pickle data'})"


def _first_sentence(err: BaseException) -> str:
    """The gist of torch's message, without its advice (which may suggest unsafe loading)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0].rstrip(".")


def verify_checkpoint(checkpoint: Any, path: str | Path) -> None:
    """Raise `CheckpointError` unless `checkpoint` (loaded from `path`) is an intact checkpoint
    of this project with finite weights. One without a checksum (written before checksums
    existed) is accepted with a warning."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint")
    integrity = checkpoint.get(INTEGRITY_KEY)
    if integrity is None:
        log.warning("%s has no checksum (written by an older version): not verified", path)
    elif not isinstance(integrity, dict) or integrity.get("algorithm") != DIGEST_ALGORITHM:
        raise CheckpointError(f"{path}: unknown integrity entry {integrity!r}")
    elif content_digest(checkpoint) != integrity.get("sha256"):
        raise CheckpointError(
            f"{path}: damaged: its content does not match the checksum written with it (bytes "
            "changed on disk or in a copy); use another checkpoint of the run (step_*.ckpt)"
        )
    missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint.get(k), dict)]
    if missing:
        found = ", ".join(map(str, list(checkpoint)[:8])) or "nothing"
        raise CheckpointError(
            f"{path}: not a checkpoint of this project's training: no {', '.join(missing)} "
            f"(it holds: {found})"
        )
    _check_finite(checkpoint["state_dict"], path)


def _check_finite(state: dict[str, Any], path: str | Path) -> None:
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {name} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{path}: tensor {name} holds NaN or infinite values (the run diverged?); "
                "use an earlier checkpoint"
            )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint onto the CPU (tensors and plain values only), verified.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: empty, truncated, damaged, unsafe, foreign or non-finite.
    """
    checkpoint = _torch_load(Path(path))
    verify_checkpoint(checkpoint, path)
    return checkpoint


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
    rest = {k: v for k, v in last.items() if k != INTEGRITY_KEY}  # its checksum is the last's
    return {**rest, "state_dict": averaged, "averaged_from": [str(p) for p in paths]}


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
    """The step of a checkpoint, read memory-mapped (cheap; verified when actually loaded)."""
    checkpoint = _torch_load(path, mmap=True)
    if not isinstance(checkpoint, dict) or "global_step" not in checkpoint:
        raise CheckpointError(f"{path} has no 'global_step': not a Lightning training checkpoint")
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
            raise IncompleteCheckpointError(
                f"{source}: no {key!r} entry; expected a checkpoint written by "
                "transformer_mt.training (keys hyper_parameters, state_dict, tokenizer)"
            )
    hparams = checkpoint["hyper_parameters"]
    fields = hparams.get("transformer")
    if not isinstance(fields, dict) or "src_vocab_size" not in fields:
        raise IncompleteCheckpointError(
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
        raise IncompleteCheckpointError(f"{source}: state_dict has no '{MODEL_PREFIX}*' weights")
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
