"""Hugging Face Marian (OPUS-MT) folders as a model format: read into ours, write back.

A `MarianMTModel` is the paper's architecture: post-norm, sinusoidal positions, embeddings
scaled by sqrt(d_model), shared and tied. What Marian does differently is mapped exactly:

- Its sinusoid layout puts all sines first and all cosines second, where ours interleaves them
  (PE[pos, 2i] = sin, PE[pos, 2i + 1] = cos, at the same frequencies). A model is unchanged
  when the coordinates of its residual stream are permuted consistently, so the import
  permutes every matrix that reads or writes the residual stream (embedding columns, W_Q /
  W_K / W_V / W_1 inputs, W_O / W_2 outputs, LayerNorm parameters): Marian coordinate i goes
  to ours 2i, coordinate d/2 + i to ours 2i + 1. The export applies the inverse.
- `final_logits_bias` becomes the bias of our output layer (`TransformerConfig.output_bias`).
- Special ids: Marian has eos 0, unk 1, pad last, and decodes from pad; ours are pad 0, unk 1,
  bos 2, eos 3 (ARCHITECTURE.md). Rows are remapped: our <pad> and <s> rows are Marian's pad
  row (its decoder starts from that embedding), </s> is its eos, the other tokens follow in
  Marian's order; so our vocabulary is Marian's plus one. The tokenizer keeps the
  SentencePiece models for splitting text and Marian's vocab.json (remapped) for the ids.
- Activation: swish (Marian's default), relu or gelu.

What cannot be expressed is refused with the option's name (e.g. `scale_embedding=false`,
separate vocabularies, different encoder and decoder widths).
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from transformer_mt.data.tokenizer import SPECIAL_PIECES, Tokenizer
from transformer_mt.formats.info import LoadedModel, ModelInfo
from transformer_mt.formats.release import CARD_FILE
from transformer_mt.model import Transformer, TransformerConfig
from transformer_mt.utils.io import publish_directory

log = logging.getLogger(__name__)

ACTIVATIONS = {"swish": "swish", "silu": "swish", "relu": "relu", "gelu": "gelu"}
_LAYER_PARTS = {  # Marian name -> (ours, how the residual stream enters it)
    "self_attn.q_proj": ("self_attn.w_q", "in"), "self_attn.k_proj": ("self_attn.w_k", "in"),
    "self_attn.v_proj": ("self_attn.w_v", "in"), "self_attn.out_proj": ("self_attn.w_o", "out"),
    "encoder_attn.q_proj": ("cross_attn.w_q", "in"),
    "encoder_attn.k_proj": ("cross_attn.w_k", "in"),
    "encoder_attn.v_proj": ("cross_attn.w_v", "in"),
    "encoder_attn.out_proj": ("cross_attn.w_o", "out"),
    "fc1": ("ffn.w_1", "in"), "fc2": ("ffn.w_2", "out"),
    "self_attn_layer_norm": ("norm1", "norm"), "encoder_attn_layer_norm": ("norm2", "norm"),
}  # fmt: skip
_FINAL_NORM = {"encoder": "norm2", "decoder": "norm3"}  # Marian's final_layer_norm per layer


def is_marian_dir(path: str | Path) -> bool:
    """A folder with a Hugging Face config.json of model_type marian."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "marian"
    except (ValueError, UnicodeDecodeError):
        return False


def interleave_permutation(d_model: int) -> Tensor:
    """(d,) long: our coordinate j holds Marian's coordinate perm[j] (2i <- i, 2i+1 <- d/2+i)."""
    half = torch.arange(d_model // 2)
    return torch.stack([half, half + d_model // 2], dim=1).reshape(-1)


def _config(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in ("d_model", "encoder_layers", "decoder_layers", "vocab_size"):
        if not isinstance(config.get(key), int):
            raise ValueError(f"{folder / 'config.json'}: no integer {key!r}")
    return config


def _check_expressible(config: dict[str, Any], source: Path) -> None:
    """Refuse, naming the option, what our Transformer cannot compute exactly."""
    pairs = [("encoder_ffn_dim", "decoder_ffn_dim"),
             ("encoder_attention_heads", "decoder_attention_heads")]  # fmt: skip
    for enc, dec in pairs:
        if config.get(enc) != config.get(dec):
            raise ValueError(f"{source}: {enc}={config.get(enc)} != {dec}={config.get(dec)}; "
                             "our encoder and decoder share one width and head count")  # fmt: skip
    problems = {
        "scale_embedding": (config.get("scale_embedding") is False,
                            "false: our embeddings are always scaled by sqrt(d_model) (the "
                            "paper's section 3.4); OPUS-MT models set it true"),
        "activation_function": (config.get("activation_function", "gelu") not in ACTIVATIONS,
                                f"{config.get('activation_function')!r}; expressible: "
                                f"{', '.join(ACTIVATIONS)}"),
        "decoder_vocab_size": (config.get("decoder_vocab_size", config["vocab_size"])
                               != config["vocab_size"], "a separate target vocabulary is not "
                               "imported yet (separate_vocabs)"),
        "d_model": (config["d_model"] % 2 == 1, "odd: sinusoidal positions need an even width"),
    }  # fmt: skip
    for key, (bad, why) in problems.items():
        if bad:
            raise ValueError(f"{source}: {key}={why}")


def _transformer_config(config: dict[str, Any], vocab_size: int) -> TransformerConfig:
    return TransformerConfig(
        src_vocab_size=vocab_size,
        tgt_vocab_size=vocab_size,
        d_model=config["d_model"],
        d_ff=config["encoder_ffn_dim"],
        num_heads=config["encoder_attention_heads"],
        num_encoder_layers=config["encoder_layers"],
        num_decoder_layers=config["decoder_layers"],
        dropout=float(config.get("dropout", 0.1)),
        attention_dropout=float(config.get("attention_dropout", 0.0)),
        activation=ACTIVATIONS[config.get("activation_function", "gelu")],
        norm_first=False,
        pos_enc="sinusoidal",
        max_positions=int(config.get("max_position_embeddings", 1024)),
        share_embeddings=bool(config.get("share_encoder_decoder_embeddings", True)),
        tie_output=bool(config.get("tie_word_embeddings", True)),
        output_bias=True,
    )


def _read_weights(folder: Path) -> dict[str, Tensor]:
    """The state dict, from safetensors (one file or shards) or pytorch_model.bin loaded
    weights-only (never running pickled code)."""
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").is_file():
        try:
            return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"{folder / 'pytorch_model.bin'}: not a plain tensor file, refused (nothing in "
                f"it was run): {first}"
            ) from None
    raise FileNotFoundError(
        f"{folder}: no weights (model.safetensors, model.safetensors.index.json or "
        "pytorch_model.bin)"
    )


def _vocabulary(folder: Path, config: dict[str, Any]) -> tuple[list[str], list[int]]:
    """(our pieces, the Marian id of each of our ids)."""
    path = folder / "vocab.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: missing vocab.json (Marian's piece -> id table)")
    table = json.loads(path.read_text(encoding="utf-8"))
    pieces = {i: piece for piece, i in table.items()}
    if sorted(pieces) != list(range(config["vocab_size"])):
        raise ValueError(f"{path}: ids do not cover 0..{config['vocab_size'] - 1} (vocab_size)")
    pad, eos = config["pad_token_id"], config["eos_token_id"]
    start = config.get("decoder_start_token_id", pad)
    if "<unk>" not in table:
        raise ValueError(f"{path}: no <unk> piece")
    specials = [pad, table["<unk>"], start, eos]  # our ids 0..3: pad unk bos eos
    rest = [i for i in range(config["vocab_size"]) if i not in set(specials)]
    ours = [*SPECIAL_PIECES, *(pieces[i] for i in rest)]
    clash = set(SPECIAL_PIECES) & {pieces[i] for i in rest}
    if clash:
        raise ValueError(f"{path}: ordinary tokens named like our special pieces: {clash}")
    return ours, specials + rest


def _layer_weights(state: dict, stack: str, i: int, perm: Tensor) -> dict[str, Tensor]:
    prefix, out = f"model.{stack}.layers.{i}.", {}
    parts = {**_LAYER_PARTS, "final_layer_norm": (_FINAL_NORM[stack], "norm")}
    for marian, (ours, kind) in parts.items():
        if f"{prefix}{marian}.weight" not in state:
            continue  # the encoder has no encoder_attn
        weight, bias = state[f"{prefix}{marian}.weight"], state[f"{prefix}{marian}.bias"]
        if kind == "in":  # reads the residual stream: permute its input columns
            weight = weight[:, perm]
        else:  # writes it (or normalizes it): permute its outputs
            weight, bias = weight[perm], bias[perm]
        out[f"{stack}.layers.{i}.{ours}.weight"] = weight
        out[f"{stack}.layers.{i}.{ours}.bias"] = bias
    return out


def _embedding(state: dict, name: str) -> Tensor:
    for key in (name, "model.shared.weight"):
        if key in state:
            return state[key]
    raise KeyError(f"no {name} (nor model.shared.weight) in the weights")


def _our_weights(state: dict, config: TransformerConfig, rows: list[int], hf: dict) -> dict:
    """Our state dict (names, row order, coordinate order) from Marian's."""
    perm, index = interleave_permutation(config.d_model), torch.tensor(rows)
    src = _embedding(state, "model.encoder.embed_tokens.weight")[index][:, perm]
    out = {"encoder.embedding.weight": src}
    if not config.share_embeddings:
        tgt = _embedding(state, "model.decoder.embed_tokens.weight")[index][:, perm]
        out["decoder.embedding.weight"] = tgt
    if not config.tie_output:
        out["decoder.output.weight"] = state["lm_head.weight"][index][:, perm]
    bias = state.get("final_logits_bias", torch.zeros(1, hf["vocab_size"]))
    out["decoder.output.bias"] = bias.reshape(-1)[index]
    for stack, layers in (("encoder", config.num_encoder_layers),
                          ("decoder", config.num_decoder_layers)):  # fmt: skip
        for i in range(layers):
            out |= _layer_weights(state, stack, i, perm)
    return out


def import_marian(model_dir: str | Path) -> LoadedModel:
    """A Marian folder as `save_pretrained` writes it (config.json, weights, source.spm,
    target.spm, vocab.json) as our model, in float32 and eval mode."""
    folder = Path(model_dir)
    for name in ("config.json", "source.spm", "target.spm"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: missing {name} (a Marian folder needs it)")
    hf = _config(folder)
    _check_expressible(hf, folder / "config.json")
    pieces, rows = _vocabulary(folder, hf)
    config = _transformer_config(hf, len(pieces))
    model = Transformer(config)
    weights = _our_weights(_read_weights(folder), config, rows, hf)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    stored = set(dict(model.named_parameters()))
    if set(missing) & stored or unexpected:
        raise ValueError(f"{folder}: weights do not map onto the model: missing "
                         f"{sorted(set(missing) & stored)}, unexpected {unexpected}")  # fmt: skip
    _warn_training_only(hf, folder)
    protos = [(folder / name).read_bytes() for name in ("source.spm", "target.spm")]
    tokenizer = Tokenizer(protos[0], protos[1], vocab=pieces)
    languages = _languages(folder)
    info = ModelInfo(config, *languages, provenance={"imported_from": str(folder),
                                                     "format": "marian"})  # fmt: skip
    return LoadedModel(model.float().eval(), tokenizer, info)


def _warn_training_only(hf: dict[str, Any], folder: Path) -> None:
    """Settings that change fine-tuning only, which our training does not reproduce."""
    if hf.get("encoder_layerdrop") or hf.get("decoder_layerdrop"):
        log.warning("%s: layerdrop is not implemented here; fine-tuning runs without it", folder)
    if hf.get("activation_dropout", 0.0) != hf.get("dropout", 0.1):
        log.warning(
            "%s: activation_dropout %s differs from dropout %s; our feed-forward uses dropout",
            folder, hf.get("activation_dropout"), hf.get("dropout"),
        )  # fmt: skip


def _languages(folder: Path) -> tuple[str | None, str | None]:
    path = folder / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        return config.get("source_lang"), config.get("target_lang")
    return None, None


def check_marian_support(config: TransformerConfig) -> None:
    """Refuse, naming the option, a model Marian cannot express."""
    problems = {
        "norm_first": (config.norm_first, "true: Marian is post-norm only"),
        "pos_enc": (config.pos_enc != "sinusoidal",
                    f"{config.pos_enc!r}: Marian has sinusoidal positions only"),
    }  # fmt: skip
    for key, (bad, why) in problems.items():
        if bad:
            raise ValueError(f"cannot export to Hugging Face Marian: {key}={why}")


def _marian_rows(loaded: LoadedModel) -> tuple[list[int], int, int]:
    """(our id of each Marian id, Marian's pad id, its decoder start id): eos 0, unk 1, the
    ordinary tokens, then <s> (unless it is a copy of <pad>, as after an import), pad last."""
    model, vocab_size = loaded.model, loaded.info.config.tgt_vocab_size
    tables = [model.encoder.embedding.weight, model.decoder.embedding.weight,
              model.output_weight]  # fmt: skip
    bias = model.output_bias
    same = all(torch.equal(t[BOS_ID], t[PAD_ID]) for t in tables)
    same = same and (bias is None or bool(bias[BOS_ID] == bias[PAD_ID]))
    rows = [EOS_ID, UNK_ID, *range(4, vocab_size)] + ([] if same else [BOS_ID]) + [PAD_ID]
    pad = len(rows) - 1
    return rows, pad, pad if same else pad - 1


def export_marian(loaded: LoadedModel, out_dir: str | Path, *, card: str = "",
                  force: bool = False) -> Path:  # fmt: skip
    """A folder `MarianMTModel.from_pretrained` and `MarianTokenizer.from_pretrained` load."""
    config = loaded.info.config
    check_marian_support(config)
    if not loaded.tokenizer.joint or config.src_vocab_size != config.tgt_vocab_size:
        raise ValueError("cannot export to Hugging Face Marian: separate source and target "
                         "vocabularies are not exported yet (tokenizer joint=false)")  # fmt: skip
    return publish_directory(out_dir, lambda tmp: _write_marian(loaded, tmp, card), force=force)


def _write_marian(loaded: LoadedModel, folder: Path, card: str) -> None:
    rows, pad, start = _marian_rows(loaded)
    config, model = loaded.info.config, loaded.model
    save_file(_marian_weights(model, rows), folder / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    hf = _marian_config(config, len(rows), pad, start)
    (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    banned = [[pad]] if start == pad else [[pad], [start]]  # ours never produce pad or <s>
    generation = {"decoder_start_token_id": start, "eos_token_id": 0, "pad_token_id": pad,
                  "forced_eos_token_id": 0, "bad_words_ids": banned}  # fmt: skip
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    pieces = loaded.tokenizer.tgt_vocabulary()
    vocab = {pieces[ours]: marian for marian, ours in enumerate(rows)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
    protos = loaded.tokenizer.to_state()
    (folder / "source.spm").write_bytes(protos["src_model"])
    (folder / "target.spm").write_bytes(protos["tgt_model"] or protos["src_model"])
    tokenizer_config = {"source_lang": loaded.info.src_lang, "target_lang": loaded.info.tgt_lang,
                        "separate_vocabs": False, "model_max_length": config.max_positions,
                        "tokenizer_class": "MarianTokenizer", "eos_token": "</s>",
                        "unk_token": "<unk>", "pad_token": "<pad>"}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (folder / CARD_FILE).write_text(card or f"# {folder.name}\n", encoding="utf-8")


def _marian_config(config: TransformerConfig, vocab: int, pad: int, start: int) -> dict:
    return {
        "model_type": "marian", "architectures": ["MarianMTModel"], "vocab_size": vocab,
        "decoder_vocab_size": vocab, "d_model": config.d_model,
        "encoder_layers": config.num_encoder_layers, "decoder_layers": config.num_decoder_layers,
        "encoder_attention_heads": config.num_heads, "decoder_attention_heads": config.num_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": config.activation, "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.dropout,
        "max_position_embeddings": config.max_positions, "scale_embedding": True,
        "share_encoder_decoder_embeddings": config.share_embeddings,
        "tie_word_embeddings": config.tie_output, "pad_token_id": pad, "eos_token_id": 0,
        "decoder_start_token_id": start, "forced_eos_token_id": 0, "is_encoder_decoder": True,
    }  # fmt: skip


def _marian_weights(model: Transformer, rows: list[int]) -> dict[str, Tensor]:
    """Marian's state dict from ours: the inverse of the import's row and coordinate maps."""
    config = model.config
    inverse = torch.argsort(interleave_permutation(config.d_model))
    index = torch.tensor(rows)
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    out = {"model.shared.weight": state["encoder.embedding.weight"][index][:, inverse]}
    if not config.share_embeddings:
        out["model.decoder.embed_tokens.weight"] = state["decoder.embedding.weight"][index][
            :, inverse
        ]
    if not config.tie_output:
        out["lm_head.weight"] = state["decoder.output.weight"][index][:, inverse]
    bias = state.get("decoder.output.bias", torch.zeros(config.tgt_vocab_size))
    out["final_logits_bias"] = bias[index].reshape(1, -1)
    for stack, layers in (("encoder", config.num_encoder_layers),
                          ("decoder", config.num_decoder_layers)):  # fmt: skip
        parts = {**_LAYER_PARTS, "final_layer_norm": (_FINAL_NORM[stack], "norm")}
        for i in range(layers):
            for marian, (ours, kind) in parts.items():
                key = f"{stack}.layers.{i}.{ours}"
                if f"{key}.weight" not in state:
                    continue
                weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
                if kind == "in":
                    weight = weight[:, inverse]
                else:
                    weight, bias = weight[inverse], bias[inverse]
                out[f"model.{stack}.layers.{i}.{marian}.weight"] = weight.contiguous()
                out[f"model.{stack}.layers.{i}.{marian}.bias"] = bias.contiguous()
    return {k: v.contiguous() for k, v in out.items()}
