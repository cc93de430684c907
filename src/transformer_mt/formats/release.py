"""The release format: a folder anyone can translate with, and nothing in it runs code.

    <dir>/model.safetensors   the weights only (fp32 or fp16), each shared matrix stored once
    <dir>/config.json         format, version, the TransformerConfig, direction, scoring,
                              provenance, the weights' dtype and sha256, tied-weight aliases
    <dir>/src.model           SentencePiece model (the joint one, or the source side)
    <dir>/tgt.model           the target SentencePiece model, when the vocabularies are separate
    <dir>/README.md           the model card

safetensors is a flat header plus raw tensor bytes, so loading never unpickles anything; the
sha256 in config.json catches a corrupted or swapped weights file before it is used. A release
is written into a temporary sibling folder and renamed into place, so an interrupted export
never leaves a half-written release behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.formats.info import LoadedModel, ModelInfo
from transformer_mt.model import Transformer
from transformer_mt.utils.io import publish_directory

RELEASE_FORMAT = "transformer-mt-release"
RELEASE_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def unique_weights(model: Transformer) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(name -> tensor for each parameter and persistent buffer stored once,
    alias name -> stored name for tied or shared matrices)."""
    stored = dict(model.named_parameters())
    persistent = set(model.state_dict())
    stored |= {n: b for n, b in model.named_buffers() if n in persistent}
    by_storage = {t.data_ptr(): name for name, t in stored.items()}
    aliases = {
        name: by_storage[t.data_ptr()]
        for name, t in model.state_dict(keep_vars=True).items()
        if name not in stored
    }
    return stored, aliases


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_release(
    loaded: LoadedModel,
    out_dir: str | Path,
    *,
    dtype: str = "float32",
    card: str = "",
    force: bool = False,
) -> Path:
    """Write `loaded` as a release folder at `out_dir`; return it.

    Raises:
        ValueError: an unknown dtype, or `out_dir` exists and is not empty (without `force`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; valid choices: {', '.join(DTYPES)}")
    return publish_directory(out_dir, lambda tmp: _write_files(loaded, tmp, dtype, card),
                             force=force)  # fmt: skip


def _write_files(loaded: LoadedModel, folder: Path, dtype: str, card: str) -> None:
    stored, aliases = unique_weights(loaded.model)
    tensors = {
        name: (t.detach().to(DTYPES[dtype]) if t.is_floating_point() else t.detach())
        .contiguous()
        .cpu()
        for name, t in stored.items()
    }
    save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": RELEASE_FORMAT})
    tokenizer_files = loaded.tokenizer.save(folder)
    config = {
        "format": RELEASE_FORMAT,
        "version": RELEASE_VERSION,
        **loaded.info.to_dict(),
        "weights": {"file": WEIGHTS_FILE, "dtype": dtype, "sha256": _sha256(folder / WEIGHTS_FILE)},
        "aliases": aliases,
        "tokenizer": tokenizer_files,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (folder / CARD_FILE).write_text(card or f"# {folder.name}\n", encoding="utf-8")


def is_release_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def read_release_config(folder: Path) -> dict[str, Any]:
    """config.json of a release folder, checked to be one (clear errors otherwise)."""
    if folder.is_file():
        hint = f": use ckpt_path={folder}" if folder.suffix == ".ckpt" else ""
        kind = "a Lightning checkpoint" if folder.suffix == ".ckpt" else "a file"
        raise ValueError(f"model_dir={folder} is {kind}, not a release folder{hint}")
    if not folder.is_dir():
        raise FileNotFoundError(f"model_dir={folder}: no such folder")
    if (folder / "model.bin").is_file() and not (folder / WEIGHTS_FILE).exists():
        raise ValueError(
            f"model_dir={folder} holds a CTranslate2 model (model.bin): add backend=ctranslate2"
        )
    if any(folder.glob("*.ckpt")) or (folder / "checkpoints").is_dir():
        raise ValueError(
            f"model_dir={folder} holds Lightning checkpoints (a run directory): use "
            f"ckpt_path={folder}, or export a release with python export.py ckpt_path={folder}"
        )
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, "src.model") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"model_dir={folder} is not a complete release folder: missing {', '.join(missing)}"
        )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / CONFIG_FILE}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != RELEASE_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{folder / CONFIG_FILE}: format {found!r}, expected {RELEASE_FORMAT!r} "
            "(a Hugging Face or other folder is not a release of this project)"
        )
    if config.get("version") != RELEASE_VERSION:
        raise ValueError(
            f"{folder / CONFIG_FILE}: release version {config.get('version')!r}; this code "
            f"reads version {RELEASE_VERSION}"
        )
    return config


def load_release(model_dir: str | Path) -> LoadedModel:
    """The model of a release folder, in float32 and eval mode, verified against config.json."""
    folder = Path(model_dir)
    config = read_release_config(folder)
    info = ModelInfo.from_dict(config, source=str(folder / CONFIG_FILE))
    weights_path = folder / WEIGHTS_FILE
    expected = (config.get("weights") or {}).get("sha256")
    if expected and _sha256(weights_path) != expected:
        raise ValueError(
            f"{weights_path}: sha256 differs from the one in {CONFIG_FILE}: the weights file is "
            "corrupted or not the one this release was written with"
        )
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({err})") from None
    model = Transformer(info.config)
    _load_weights(model, weights, config.get("aliases") or {}, weights_path)
    tokenizer = _load_tokenizer(folder, config)
    _check_vocabulary(tokenizer, info, folder)
    return LoadedModel(model.eval(), tokenizer, info)


def _load_weights(
    model: Transformer, weights: dict[str, Tensor], aliases: dict[str, str], path: Path
) -> None:
    """Copy `weights` into `model`, naming the first tensor that is missing, extra, misshapen
    or not finite."""
    stored, _ = unique_weights(model)
    missing = sorted(set(stored) - set(weights))
    extra = sorted(set(weights) - set(stored) - set(aliases))
    if missing or extra:
        raise ValueError(
            f"{path}: the weights do not fit config.json's model: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    for name, tensor in weights.items():
        target = stored[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config.json's model "
                f"needs {tuple(target.shape)}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {name} holds NaN or infinite values")
    with torch.no_grad():
        for name, tensor in weights.items():
            stored[name].copy_(tensor.to(stored[name].dtype))


def _load_tokenizer(folder: Path, config: dict[str, Any]) -> Tokenizer:
    names = config.get("tokenizer") or {"src": "src.model"}
    for name in names.values():
        if name is not None and not (folder / name).is_file():
            raise FileNotFoundError(f"model_dir={folder}: missing {name}")
    try:
        return Tokenizer.load(folder, names)
    except (RuntimeError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"model_dir={folder}: unreadable tokenizer files ({err})") from None


def _check_vocabulary(tokenizer: Tokenizer, info: ModelInfo, folder: Path) -> None:
    sizes = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    expected = (info.config.src_vocab_size, info.config.tgt_vocab_size)
    if sizes != expected:
        raise ValueError(
            f"model_dir={folder}: the SentencePiece models have {sizes[0]}/{sizes[1]} pieces, "
            f"config.json's model {expected[0]}/{expected[1]}"
        )
