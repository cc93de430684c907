"""Open a model for translation with the chosen backend (the ``backend`` config group).

Each function here is a ``backend`` option: built ``_partial_`` from its config (device,
threads), then called with what to load and how to search. Both return the same
`OpenedModel`, so `translate.py` and `evaluate.py` never check which backend they got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.decoding import Search
from transformer_mt.formats import ModelInfo, load_model
from transformer_mt.inference.backend import Backend, TorchBackend

log = logging.getLogger(__name__)


@dataclass
class OpenedModel:
    """A backend ready to search, the tokenizer for its text, its metadata, and the seconds
    loading took (reported apart from translation time)."""

    backend: Backend
    tokenizer: Tokenizer
    info: ModelInfo
    load_seconds: float


def resolve_device(device: str) -> torch.device:
    """``auto`` = cuda when available, else cpu; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_backend(
    *,
    search: Search,
    ckpt_path: str | Path | Sequence[str | Path] | None = None,
    model_dir: str | Path | None = None,
    average_last: int | None = None,
    device: str = "auto",
    threads: int = 0,
) -> OpenedModel:
    """This package's PyTorch model from a checkpoint or a release folder.

    threads: intra-op threads (0 = torch's default).
    """
    if threads < 0:
        raise ValueError(f"backend.threads must be >= 0 (0 = torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    loaded = load_model(ckpt_path=ckpt_path, model_dir=model_dir, average_last=average_last)
    backend = TorchBackend(loaded.model, search, resolve_device(device))
    return OpenedModel(backend, loaded.tokenizer, loaded.info, time.perf_counter() - start)


def ctranslate2_backend(
    *,
    search: Search,
    ckpt_path: str | Path | Sequence[str | Path] | None = None,
    model_dir: str | Path | None = None,
    average_last: int | None = None,
    device: str = "cpu",
    intra_threads: int = 0,
    compute_type: str = "default",
    exact_scores: bool = False,
    exact_limits: bool = False,
) -> OpenedModel:
    """An exported CTranslate2 folder (`export.py format=ctranslate2`), run by its C++ engine."""
    from transformer_mt.inference.ctranslate2 import CTranslate2Backend

    if ckpt_path is not None or average_last is not None or model_dir is None:
        raise ValueError(
            "backend=ctranslate2 takes model_dir=<CTranslate2 folder> (write one with "
            "python export.py ckpt_path=... format=ctranslate2 out=<dir>), not ckpt_path"
        )
    start = time.perf_counter()
    backend = CTranslate2Backend(
        model_dir, search, device=device, intra_threads=intra_threads,
        compute_type=compute_type, exact_scores=exact_scores, exact_limits=exact_limits,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return OpenedModel(backend, backend.tokenizer, backend.info, seconds)
