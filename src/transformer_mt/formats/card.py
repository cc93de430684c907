"""The model card (README.md) of an exported model: what it is, how it was trained, what it
scores, and how to use it. Everything in it is read from the checkpoint, the run's composed
config and `evaluate.py`'s scores.json files; nothing is typed by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from transformer_mt.formats.info import LoadedModel, ModelInfo


def with_measured_decoding(info: ModelInfo, scores: Path) -> ModelInfo:
    """`info` with the decoding settings of an `evaluate.py` scores.json (what the card's
    figures were measured with; `benchmarks/released_models.py` re-scores with them)."""
    decoding = json.loads(scores.read_text(encoding="utf-8")).get("decoding")
    return dataclasses.replace(info, decoding=decoding) if decoding else info


def run_directory(checkpoint: str | Path) -> Path | None:
    """The training run a checkpoint belongs to: the nearest parent with `.hydra/config.yaml`."""
    for parent in list(Path(checkpoint).resolve().parents)[:3]:
        if (parent / ".hydra" / "config.yaml").is_file():
            return parent
    return None


def _architecture(loaded: LoadedModel) -> list[str]:
    c = loaded.info.config
    params = sum(p.numel() for p in loaded.model.parameters())
    norm = "pre-norm" if c.norm_first else "post-norm (as the paper)"
    return [
        f"- Transformer encoder-decoder, {c.num_encoder_layers}+{c.num_decoder_layers} layers, "
        f"d_model {c.d_model}, d_ff {c.d_ff}, {c.num_heads} heads, {c.activation}, {norm}, "
        f"{c.pos_enc} positions; {params:,} parameters",
        f"- SentencePiece vocabulary: {c.src_vocab_size:,} source / {c.tgt_vocab_size:,} target "
        f"pieces ({'one joint vocabulary' if loaded.tokenizer.joint else 'separate'}); "
        f"embeddings {'shared' if c.share_embeddings else 'separate'}, output layer "
        f"{'tied to' if c.tie_output else 'separate from'} the target embedding",
    ]


def _training(loaded: LoadedModel, run_dir: Path | None) -> list[str]:
    prov = loaded.info.provenance
    lines = []
    checkpoints = prov.get("checkpoints") or []
    if checkpoints:
        averaged = f"the average of {len(checkpoints)} checkpoints" if len(checkpoints) > 1 else ""
        lines.append(f"- Weights: {averaged or 'one checkpoint'}, last at update "
                     f"{prov.get('global_step')}")  # fmt: skip
    if prov.get("train_seconds") is not None:
        lines.append(f"- Training time (the run's Timer): {prov['train_seconds']:,.0f} s")
    if run_dir is None:
        return lines
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():  # hydra.* only placed the run's folder on the training machine
        given = yaml.safe_load(overrides.read_text()) or []
        args = [a for a in given if not a.startswith("hydra.")]
        lines.append(f"- Trained with: `python train.py {' '.join(args)}`")
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    corpus = (config.get("data") or {}).get("corpus") or {}
    target = str(corpus.get("_target_", "")).rsplit(".", 1)[-1]
    lines.append(f"- Data: {target or 'a custom corpus'} {corpus.get('src_lang')}→"
                 f"{corpus.get('tgt_lang')}; max_steps {config['trainer'].get('max_steps')}, "
                 f"{config['data'].get('max_tokens')} tokens per batch")  # fmt: skip
    return lines


def _scores(score_files: list[Path]) -> list[str]:
    if not score_files:
        return ["No scores were given at export (`export.py scores=<scores.json>`)."]
    lines = ["| input | sentences | BLEU | BLEU (lowercased) | chrF | TER | decoding |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    signatures = []
    for path in score_files:
        s = json.loads(path.read_text(encoding="utf-8"))
        decoding = s.get("decoding") or {}
        how = ", ".join(f"{k}={v}" for k, v in decoding.items() if not k.startswith("_"))
        figures = " | ".join(f"{s[k]:.2f}" for k in ("bleu", "bleu_lc", "chrf", "ter"))
        lines.append(f"| {s.get('input')} | {s.get('num_sentences')} | {figures} | {how} |")
        signatures.append(
            f"- BLEU `{s['bleu_signature']}`, lowercased `{s['bleu_lc_signature']}`, "
            f"chrF `{s['chrf_signature']}`, TER `{s['ter_signature']}`"
        )
    return [*lines, "", "sacreBLEU signatures:", *dict.fromkeys(signatures)]


def model_card(
    loaded: LoadedModel,
    name: str,
    *,
    run_dir: Path | None = None,
    score_files: list[Path] | None = None,
    usage: str = "",
) -> str:
    """The README.md text of an exported model."""
    info = loaded.info
    parts = [
        f"# {name}",
        "",
        f"Machine translation {info.src_lang} → {info.tgt_lang}, trained with transformer-mt.",
        "",
        "## Model",
        *_architecture(loaded),
        "",
        "## Training",
        *(_training(loaded, run_dir) or ["- (no training provenance in the checkpoint)"]),
        "",
        "## Scores",
        *_scores(score_files or []),
    ]
    if usage:
        parts += ["", "## Use", "", "```bash", usage, "```"]
    return "\n".join(parts) + "\n"
