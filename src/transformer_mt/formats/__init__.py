"""Model formats: Lightning checkpoints (with averaging), release folders, CTranslate2 folders,
Hugging Face Marian (OPUS-MT) folders.

Each format module reads its files into a `LoadedModel` (the Transformer, its tokenizer and
`ModelInfo`) or writes one out; `load_model` picks the reader for what the user pointed at and
says what it found when that is the wrong kind of file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformer_mt.formats.info import LoadedModel, ModelInfo
from transformer_mt.formats.lightning import load_lightning
from transformer_mt.formats.marian import import_marian, is_marian_dir
from transformer_mt.formats.release import is_release_dir, load_release, write_release

__all__ = ["LoadedModel", "ModelInfo", "load_model", "write_release"]


def load_model(
    *,
    ckpt_path: str | Path | Sequence[str | Path] | None = None,
    model_dir: str | Path | None = None,
    average_last: int | None = None,
) -> LoadedModel:
    """The model of a checkpoint (file, list or run directory; averaged with `average_last`),
    or of a release folder or a Hugging Face Marian folder (imported): exactly one of
    `ckpt_path` and `model_dir`."""
    if (ckpt_path is None) == (model_dir is None):
        raise ValueError(
            "give exactly one of ckpt_path=<.ckpt file, list or run dir> and "
            "model_dir=<release folder>, e.g. model_dir=models/multi30k-en-de-tiny"
        )
    if model_dir is not None:
        if average_last is not None:
            raise ValueError("average_last needs ckpt_path=<run dir>; a release holds one model")
        if is_marian_dir(model_dir):
            return import_marian(model_dir)
        return load_release(model_dir)
    if isinstance(ckpt_path, str | Path) and is_release_dir(ckpt_path):
        raise ValueError(f"ckpt_path={ckpt_path} is a release folder: use model_dir={ckpt_path}")
    return load_lightning(ckpt_path, average_last)
