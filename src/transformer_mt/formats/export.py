"""The ``format`` config group of `export.py`: write a loaded model as a release folder, a
CTranslate2 folder or a Hugging Face Marian folder, each with its model card."""

from __future__ import annotations

from pathlib import Path

from transformer_mt.formats.info import LoadedModel
from transformer_mt.formats.release import CARD_FILE, write_release


def to_release(
    loaded: LoadedModel, out: str | Path, *, card: str, force: bool = False, dtype: str = "float32"
) -> Path:
    """A release folder (safetensors in `dtype`, config.json, SentencePiece models, card)."""
    return write_release(loaded, out, dtype=dtype, card=card, force=force)


def to_ctranslate2(
    loaded: LoadedModel,
    out: str | Path,
    *,
    card: str,
    force: bool = False,
    quantization: str = "float32",
) -> Path:
    """A CTranslate2 folder (model.bin in `quantization`, vocabularies, SentencePiece models,
    transformer_mt.json, card) for `translate.py backend=ctranslate2 model_dir=<out>`."""
    from transformer_mt.formats.ctranslate2 import export_ctranslate2

    folder = export_ctranslate2(
        loaded.model, loaded.tokenizer, loaded.info, out, quantization=quantization, force=force
    )
    (Path(folder) / CARD_FILE).write_text(card, encoding="utf-8")
    return Path(folder)


def to_hf(loaded: LoadedModel, out: str | Path, *, card: str, force: bool = False) -> Path:
    """A Hugging Face Marian folder (`MarianMTModel.from_pretrained(out)`), for the models
    Marian can express (post-norm, sinusoidal positions)."""
    from transformer_mt.formats.marian import export_marian

    return export_marian(loaded, out, card=card, force=force)
