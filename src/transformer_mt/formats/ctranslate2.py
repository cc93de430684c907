"""Export to CTranslate2: the same Transformer, run by CTranslate2's C++ kernels.

    <dir>/model.bin                 CTranslate2's weights (at the requested quantization)
    <dir>/config.json               CTranslate2's config: <s> starts decoding, </s> ends it
    <dir>/shared_vocabulary.json    piece i of the SentencePiece model is token id i
                                    (source_/target_vocabulary.json when not joint)
    <dir>/src.model, tgt.model      the SentencePiece models (tgt.model when not joint)
    <dir>/transformer_mt.json       format, version, quantization and the ModelInfo

The spec is built through CTranslate2's Python spec API (`TransformerSpec` from an encoder
and a decoder spec), weight by weight, not through one of its converters: our layout is none
of theirs (interleaved sinusoids, a T5 bias table per stack, separate W_Q/W_K/W_V). Sources are
passed with their final </s> already in the tokens, as our encoder sees them, so CTranslate2's
`add_source_eos` stays off. The folder is written to a temporary sibling and renamed into
place, so an interrupted export never leaves a half folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from transformer_mt.constants import BOS_ID, EOS_ID, UNK_ID
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.formats.info import ModelInfo
from transformer_mt.formats.release import CONFIG_FILE, RELEASE_FORMAT
from transformer_mt.model import MultiHeadAttention, Transformer, TransformerConfig
from transformer_mt.model.positional import sinusoid_table
from transformer_mt.utils.io import publish_directory

CT2_FORMAT = "transformer-mt-ctranslate2"
CT2_VERSION = 1
INFO_FILE, MODEL_FILE = "transformer_mt.json", "model.bin"
QUANTIZATIONS = (
    "float32", "int8", "int8_float32", "int16", "float16", "bfloat16", "int8_float16",
    "int8_bfloat16",
)  # fmt: skip
CT2_POS_ENC = ("sinusoidal", "learned", "relative", "none", "rope")
"""Position kinds CTranslate2 computes exactly as our model does (greedy parity tested)."""

_UNSUPPORTED = {
    "alibi": (
        "CTranslate2 has ALiBi only in its decoder spec (TransformerDecoderSpec(alibi=True), "
        "a causal bias made for decoder-only models); its encoder spec has none, while our "
        "encoder adds the symmetric bias -m_h * |i - j| in every self-attention"
    ),
}
LAYER_NORM_EPS = 1e-5
"""torch.nn.LayerNorm's default, which every LayerNorm of our model uses."""


def check_ctranslate2_support(config: TransformerConfig) -> None:
    """Raise ValueError when CTranslate2 cannot compute what `config`'s model computes."""
    if config.pos_enc not in CT2_POS_ENC:
        reason = _UNSUPPORTED.get(config.pos_enc, "no CTranslate2 equivalent")
        raise ValueError(
            f"pos_enc={config.pos_enc!r} cannot be exported to CTranslate2: {reason}. "
            f"Exportable kinds: {', '.join(CT2_POS_ENC)}"
        )


def check_quantization(quantization: str) -> None:
    """Reject a quantization CTranslate2 cannot store, listing those it can."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"quantization={quantization!r}; valid choices: {', '.join(QUANTIZATIONS)}"
        )


def position_rows(config: TransformerConfig) -> tuple[int | None, int | None]:
    """Rows of the (encoder, decoder) position tables the export writes; None: no table.

    CTranslate2 adds a table to the embeddings whenever its spec has one, and raises past its
    last row, so these bound the source length and the output length (EOS included). `none` and
    rope's encoder (CTranslate2 gives every non-relative encoder a table) get a zero table;
    the relative kind and rope's decoder have none, hence no length limit.
    """
    if config.pos_enc == "relative":
        return None, None
    return config.max_positions, None if config.pos_enc == "rope" else config.max_positions


def require_ctranslate2() -> Any:
    """The ctranslate2 module, imported only when a CTranslate2 folder is written or run (it
    is an optional dependency), with the install hint when it is missing."""
    try:
        import ctranslate2
    except ImportError:
        raise ImportError(
            "the CTranslate2 format needs the ctranslate2 package: pip install ctranslate2"
        ) from None
    return ctranslate2


def _array(tensor: Tensor) -> np.ndarray:
    """A float32 numpy copy (CTranslate2's int8 quantization scales its input in place)."""
    return tensor.detach().to("cpu", torch.float32).numpy().copy()


def _set_linear(spec: Any, weight: Tensor, bias: Tensor | None = None) -> None:
    """weight (out, in) as nn.Linear stores it, which is CTranslate2's layout too."""
    spec.weight = _array(weight)
    if bias is not None:
        spec.bias = _array(bias)


def _set_layer_norm(spec: Any, norm: nn.Module) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _set_attention(spec: Any, attn: MultiHeadAttention, self_attention: bool) -> None:
    """Self-attention: linear[0] = [W_Q; W_K; W_V] (3D, D). Cross-attention: linear[0] = W_Q,
    linear[1] = [W_K; W_V] (2D, D). linear[-1] = W_O. Queries keep the default 1/sqrt(d_k)."""
    q, k, v = attn.w_q, attn.w_k, attn.w_v
    groups = [(q, k, v)] if self_attention else [(q,), (k, v)]
    for linear, group in zip(spec.linear[:-1], groups, strict=True):
        weight = torch.cat([p.weight for p in group])  # (len(group) * D, D)
        _set_linear(linear, weight, torch.cat([p.bias for p in group]))
    _set_linear(spec.linear[-1], attn.w_o.weight, attn.w_o.bias)


def _set_ffn(spec: Any, layer: nn.Module, norm: nn.Module) -> None:
    _set_linear(spec.linear_0, layer.ffn.w_1.weight, layer.ffn.w_1.bias)
    _set_linear(spec.linear_1, layer.ffn.w_2.weight, layer.ffn.w_2.bias)
    _set_layer_norm(spec.layer_norm, norm)


def _position_table(stack: nn.Module, config: TransformerConfig, rows: int) -> np.ndarray:
    """(rows, D) added to the scaled embeddings: ours explicitly, since CTranslate2's built-in
    sinusoids concatenate sin and cos halves while ours interleave them (sin even, cos odd)."""
    if config.pos_enc == "sinusoidal":
        return _array(sinusoid_table(rows, config.d_model))
    if config.pos_enc == "learned":
        return _array(stack.positional.weight)
    return np.zeros((rows, config.d_model), dtype=np.float32)  # a kind adding nothing


def _stack_options(config: TransformerConfig, ct2: Any) -> dict[str, Any]:
    """Keyword arguments shared by the encoder and decoder specs."""
    activation = ct2.specs.Activation
    # nn.GELU() is the exact erf form, CTranslate2's GELU (not GELUTanh); swish is nn.SiLU
    kinds = {"relu": activation.RELU, "gelu": activation.GELU, "swish": activation.SWISH}
    options: dict[str, Any] = {
        "pre_norm": config.norm_first,
        "activation": kinds[config.activation],
        "relative_attention_bias": config.pos_enc == "relative",
    }
    if config.pos_enc == "rope":  # all dims, rotate-half layout, base 10000 as ours
        options |= {"rotary_dim": 0, "rotary_interleave": False, "rotary_base": 10000.0}
    return options


def _relative_bias(layers: list[Any], stack: nn.Module, config: TransformerConfig) -> None:
    """Our one T5 table per stack (num_buckets, h), given to every layer (T5 shares it too)."""
    table = _array(stack.positional.bias.weight)
    for layer in layers:
        layer.self_attention.relative_attention_bias = table
        layer.self_attention.relative_attention_max_distance = np.int32(
            config.relative_max_distance
        )


def _encoder_spec(model: Transformer, ct2: Any) -> Any:
    config, encoder = model.config, model.encoder
    spec = ct2.specs.TransformerEncoderSpec(
        config.num_encoder_layers, config.num_heads, **_stack_options(config, ct2)
    )
    spec.embeddings[0].weight = _array(encoder.embedding.weight)  # scaled by sqrt(D) there too
    rows, _ = position_rows(config)
    if rows is not None:
        spec.position_encodings.encodings = _position_table(encoder, config, rows)
    for layer_spec, layer in zip(spec.layer, encoder.layers, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_layer_norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _set_ffn(layer_spec.ffn, layer, layer.norm2)
    if config.pos_enc == "relative":
        _relative_bias(spec.layer, encoder, config)
    if config.norm_first:
        _set_layer_norm(spec.layer_norm, encoder.final_norm)
    return spec


def _decoder_spec(model: Transformer, ct2: Any) -> Any:
    config, decoder = model.config, model.decoder
    spec = ct2.specs.TransformerDecoderSpec(
        config.num_decoder_layers, config.num_heads, **_stack_options(config, ct2)
    )
    spec.embeddings.weight = _array(decoder.embedding.weight)
    _, rows = position_rows(config)
    if rows is not None:
        spec.position_encodings.encodings = _position_table(decoder, config, rows)
    for layer_spec, layer in zip(spec.layer, decoder.layers, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_layer_norm(layer_spec.self_attention.layer_norm, layer.norm1)
        _set_attention(layer_spec.attention, layer.cross_attn, self_attention=False)
        _set_layer_norm(layer_spec.attention.layer_norm, layer.norm2)
        _set_ffn(layer_spec.ffn, layer, layer.norm3)
    if config.pos_enc == "relative":
        _relative_bias(spec.layer, decoder, config)
    if config.norm_first:
        _set_layer_norm(spec.layer_norm, decoder.final_norm)
    # (V, D) and the logits' bias when the model has one (imported Marian models); a tied
    # matrix gets aliased to the embedding
    _set_linear(spec.projection, model.output_weight, model.output_bias)
    return spec


def build_spec(model: Transformer, tokenizer: Tokenizer) -> Any:
    """The `ctranslate2.specs.TransformerSpec` of `model`, vocabularies and config set."""
    ct2 = require_ctranslate2()
    check_ctranslate2_support(model.config)
    spec = ct2.specs.TransformerSpec(_encoder_spec(model, ct2), _decoder_spec(model, ct2))
    target = tokenizer.tgt_vocabulary()
    spec.register_source_vocabulary(tokenizer.src_vocabulary())
    spec.register_target_vocabulary(target)
    config = spec.config
    config.unk_token = target[UNK_ID]
    config.bos_token = config.decoder_start_token = target[BOS_ID]
    config.eos_token = target[EOS_ID]
    config.add_source_bos = config.add_source_eos = False  # sources carry their </s> already
    config.layer_norm_epsilon = LAYER_NORM_EPS
    return spec


def _check_inputs(model: Transformer, tokenizer: Tokenizer, info: ModelInfo) -> None:
    config = model.config
    if info.config != config:
        raise ValueError("info.config differs from model.config: the metadata must describe it")
    sizes = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    if sizes != (config.src_vocab_size, config.tgt_vocab_size):
        raise ValueError(
            f"the tokenizer has {sizes[0]}/{sizes[1]} pieces, the model "
            f"{config.src_vocab_size}/{config.tgt_vocab_size}"
        )


def export_ctranslate2(
    model: Transformer,
    tokenizer: Tokenizer,
    info: ModelInfo,
    out_dir: str | Path,
    quantization: str = "float32",
    *,
    force: bool = False,
) -> Path:
    """Write `model` as a CTranslate2 folder at `out_dir` (see the module docstring); return it.

    Raises:
        ValueError: an unknown quantization, a model CTranslate2 cannot express (see
            `check_ctranslate2_support`), or `out_dir` exists and is not empty (without `force`).
    """
    check_quantization(quantization)
    check_ctranslate2_support(model.config)
    _check_inputs(model, tokenizer, info)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ValueError(f"out={out} exists and is not empty; choose another or set force=true")
    spec = build_spec(model, tokenizer)
    spec.validate()
    spec.optimize(quantization=quantization)  # aliases tied matrices, then quantizes
    return publish_directory(
        out, lambda tmp: _write_files(spec, tokenizer, info, quantization, tmp), force=force
    )


def _write_files(
    spec: Any, tokenizer: Tokenizer, info: ModelInfo, quantization: str, folder: Path
) -> None:
    """Everything the folder holds (`publish_directory` makes it durable and shareable)."""
    spec.save(str(folder))
    tokenizer.save(folder)
    meta = {"format": CT2_FORMAT, "version": CT2_VERSION, "quantization": quantization}
    text = json.dumps({**meta, **info.to_dict()}, indent=2, ensure_ascii=False)
    (folder / INFO_FILE).write_text(text + "\n", encoding="utf-8")


def is_ctranslate2_dir(path: str | Path) -> bool:
    """A folder written by `export_ctranslate2` (model.bin and transformer_mt.json)."""
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / INFO_FILE).is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _other_kind(folder: Path) -> str | None:
    """What a folder that is not one of ours holds, in words, or None when it may be ours."""
    config_path = folder / CONFIG_FILE
    config = _read_json(config_path) if config_path.is_file() else None
    config = config if isinstance(config, dict) else {}
    if config.get("format") == RELEASE_FORMAT:
        return "this is a release folder; use backend=torch"
    if (folder / MODEL_FILE).is_file() and not (folder / INFO_FILE).exists():
        return "a CTranslate2 model not exported by this project (no transformer_mt.json)"
    if "model_type" in config or "architectures" in config:
        return "a Hugging Face model folder (config.json names its model_type), not ours"
    return None


def _check_folder(folder: Path) -> None:
    """Clear errors for a path that is not a complete CTranslate2 folder of ours."""
    if folder.is_file():
        kind = "a file"
        if folder.suffix == ".ckpt":
            kind = f"a Lightning checkpoint (use backend=torch ckpt_path={folder})"
        raise ValueError(f"model_dir={folder} is {kind}, not a CTranslate2 folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"model_dir={folder}: no such folder")
    other = _other_kind(folder)
    if other is not None:
        raise ValueError(f"model_dir={folder}: {other}")
    missing = [f for f in (MODEL_FILE, INFO_FILE, "src.model") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"model_dir={folder} is not a complete CTranslate2 folder: missing {', '.join(missing)}"
        )


def read_ctranslate2_dir(path: str | Path) -> tuple[ModelInfo, Tokenizer]:
    """The metadata and tokenizer of an exported folder, checked to be one of ours."""
    folder = Path(path)
    _check_folder(folder)
    data = _read_json(folder / INFO_FILE)
    if not isinstance(data, dict) or data.get("format") != CT2_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{folder / INFO_FILE}: format {found!r}, expected {CT2_FORMAT!r}")
    if data.get("version") != CT2_VERSION:
        raise ValueError(
            f"{folder / INFO_FILE}: version {data.get('version')!r}; this code reads "
            f"version {CT2_VERSION}"
        )
    info = ModelInfo.from_dict(data, source=str(folder / INFO_FILE))
    try:
        tokenizer = Tokenizer.load(folder)
    except (OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"model_dir={folder}: unreadable SentencePiece model ({err})") from None
    sizes = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    if sizes != (info.config.src_vocab_size, info.config.tgt_vocab_size):
        raise ValueError(
            f"model_dir={folder}: the SentencePiece models have {sizes[0]}/{sizes[1]} pieces, "
            f"{INFO_FILE}'s model {info.config.src_vocab_size}/{info.config.tgt_vocab_size}"
        )
    return info, tokenizer
