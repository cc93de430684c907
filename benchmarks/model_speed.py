"""Decoding and forward+backward speed against Hugging Face Marian and CTranslate2, in one run.

Random weights, identical dimensions (d_model 256, 3+3 layers, 4 heads, d_ff 1024, vocab 8000),
identical random batches. Every system produces a fixed number of target tokens per sentence
(end of sentence is blocked until the last step), so the work is the same whatever the weights.
CTranslate2 runs twice: on the Marian model through its own Transformers converter
(`ctranslate2`), and on our model through our exporter (`transformer_mt_ct2`, the spec that
`export.py format=ctranslate2` writes, float32).

    PYTHONPATH=src python -m benchmarks.model_speed [--repeats 5] [--threads 2]

Every system runs with the same number of intra-op threads (default 2, this machine's cores).
On a shared machine a second thread costs as much as it gives: each parallel region waits for
the slowest thread, and a thread the OS has given to someone else stalls it for a time slice,
so every small kernel can cost milliseconds. The load average is recorded before and after;
compare systems by the ratios, which come from the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.machine import machine_info
from transformer_mt.constants import EOS_ID
from transformer_mt.decoding import beam_search, greedy_search
from transformer_mt.model import Transformer, TransformerConfig

D_MODEL, D_FF, HEADS, LAYERS, VOCAB = 256, 1024, 4, 3, 8000


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list]:
    """Wall time of each function in each of `repeats` rounds that call every function once
    (after one warm-up call each), so a change in machine load hits all systems alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def round_ratios(times: dict[str, list[float]], ours: str, peer: str) -> dict[str, float]:
    """Speed ratio ours / peer within each round (same moment, same load): median, min, max.

    On this shared machine the speed drifts by tens of percent within minutes, so the ratio of
    two medians taken at different moments moves more than the per-round ratios do.
    """
    ratios = [p / o for o, p in zip(times[ours], times[peer], strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def random_batch(batch: int, src_len: int, tgt_len: int, seed: int) -> dict[str, torch.Tensor]:
    """Random ids in [4, VOCAB) (no specials); sources end with EOS as our data pipeline does."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (batch, src_len), generator=g)
    src[:, -1] = EOS_ID
    tgt = torch.randint(4, VOCAB, (batch, tgt_len + 1), generator=g)
    return {"src": src, "tgt_in": tgt[:, :-1], "tgt_out": tgt[:, 1:]}


def build_ours() -> Transformer:
    config = TransformerConfig(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=D_MODEL,
        d_ff=D_FF,
        num_heads=HEADS,
        num_encoder_layers=LAYERS,
        num_decoder_layers=LAYERS,
        dropout=0.1,
        share_embeddings=True,
        tie_output=True,
    )
    return Transformer(config)


def build_marian(
    d_model: int = D_MODEL,
    d_ff: int = D_FF,
    heads: int = HEADS,
    layers: int = LAYERS,
    vocab: int = VOCAB,
):
    """A randomly initialised MarianMTModel of the given size (shared, tied embeddings)."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=d_ff,
        decoder_ffn_dim=d_ff,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.1,  # ours drops out inside the feed-forward too: same work
        max_position_embeddings=512,
        pad_token_id=vocab - 1,
        eos_token_id=EOS_ID,
        decoder_start_token_id=vocab - 1,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return MarianMTModel(config)


class _VocabOnlyTokenizer:
    """What CTranslate2's Marian loader reads from a tokenizer: the vocabulary and specials."""

    eos_token, unk_token, pad_token = "</s>", "<unk>", "<pad>"
    specials = {1: "<unk>", EOS_ID: "</s>", VOCAB - 1: "<pad>"}

    def get_vocab(self) -> dict[str, int]:
        return {self.specials.get(i, f"t{i}"): i for i in range(VOCAB)}


def convert_to_ctranslate2(marian, workdir: Path):
    """Convert the in-memory Marian model with CTranslate2's own Transformers converter."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    hf_dir, ct2_dir = workdir / "hf", workdir / "ct2"
    marian.save_pretrained(hf_dir)

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return _VocabOnlyTokenizer()

    Converter(str(hf_dir)).convert(str(ct2_dir), quantization="float32", force=True)
    threads = torch.get_num_threads()
    return ctranslate2.Translator(
        str(ct2_dir), device="cpu", intra_threads=threads, inter_threads=1
    )


class _NumberedVocabulary:
    """A vocabulary of VOCAB pieces for our exporter: the specials, then t4, t5, ..."""

    pieces = ["<pad>", "<unk>", "<s>", "</s>", *(f"t{i}" for i in range(4, VOCAB))]

    def src_vocabulary(self) -> list[str]:
        return self.pieces

    def tgt_vocabulary(self) -> list[str]:
        return self.pieces


def export_ours_to_ctranslate2(model: Transformer, workdir: Path):
    """Our model through our own CTranslate2 exporter (the spec export.py writes)."""
    import ctranslate2

    from transformer_mt.formats.ctranslate2 import build_spec

    folder = workdir / "ours_ct2"
    folder.mkdir()
    spec = build_spec(model, _NumberedVocabulary())
    spec.validate()
    spec.optimize(quantization="float32")
    spec.save(str(folder))
    threads = torch.get_num_threads()
    return ctranslate2.Translator(str(folder), device="cpu", intra_threads=threads, inter_threads=1)


def decode_ours_ct2(translator, src: torch.Tensor, beam: int, out_len: int) -> int:
    pieces = _NumberedVocabulary.pieces
    tokens = [[pieces[int(i)] for i in row] for row in src.tolist()]
    results = translator.translate_batch(
        tokens, beam_size=beam, max_decoding_length=out_len + 1,
        min_decoding_length=out_len + 1, max_batch_size=0, return_end_token=True,
    )  # fmt: skip
    return sum(len(r.hypotheses[0]) for r in results)


def decode_ours(model: Transformer, src: torch.Tensor, beam: int, out_len: int) -> int:
    """Decode exactly `out_len` tokens + EOS per sentence; returns the tokens produced."""
    kwargs = dict(max_len_a=0.0, max_len_b=out_len + 1, min_len=out_len + 1)
    with torch.inference_mode():
        if beam == 1:
            hyps = greedy_search(model, src, **kwargs)
            return sum(len(h.tokens) + 1 for h in hyps)
        nbest = beam_search(model, src, beam_size=beam, **kwargs)
        return sum(len(h[0].tokens) + 1 for h in nbest)


def decode_marian(marian, src: torch.Tensor, beam: int, out_len: int) -> int:
    with torch.inference_mode():
        out = marian.generate(
            input_ids=src,
            attention_mask=torch.ones_like(src),
            num_beams=beam,
            do_sample=False,
            max_new_tokens=out_len + 1,
            min_new_tokens=out_len + 1,
        )
    return int((out.shape[1] - 1) * out.shape[0])


def decode_ct2(translator, src: torch.Tensor, beam: int, out_len: int) -> int:
    vocab = _VocabOnlyTokenizer.specials
    tokens = [[vocab.get(int(i), f"t{int(i)}") for i in row] for row in src.tolist()]
    results = translator.translate_batch(
        tokens,
        beam_size=beam,
        max_decoding_length=out_len + 1,
        min_decoding_length=out_len + 1,
        max_batch_size=0,
        return_end_token=True,
    )
    return sum(len(r.hypotheses[0]) for r in results)


def train_step(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    params: list[torch.nn.Parameter],
    batch: dict[str, torch.Tensor],
) -> Callable[[], None]:
    """One forward + label-smoothed loss + backward on `batch` (gradients then dropped)."""

    def step() -> None:
        logits = forward(batch)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch["tgt_out"].reshape(-1), label_smoothing=0.1
        )
        loss.backward()
        for p in params:
            p.grad = None

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--src-len", type=int, default=24)
    parser.add_argument("--out-len", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, every system")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_speed.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    ours, marian = build_ours().eval(), build_marian().eval()
    src = random_batch(args.batch, args.src_len, args.out_len, seed=1)["src"]
    results: dict[str, dict] = {"decoding": {}, "forward_backward": {}}
    with tempfile.TemporaryDirectory() as tmp:
        translator = convert_to_ctranslate2(marian, Path(tmp))
        ours_ct2 = export_ours_to_ctranslate2(ours, Path(tmp))
        for beam in (1, 5):
            systems = {
                "transformer_mt": partial(decode_ours, ours, src, beam, args.out_len),
                "hf_marian": partial(decode_marian, marian, src, beam, args.out_len),
                "ctranslate2": partial(decode_ct2, translator, src, beam, args.out_len),
                "transformer_mt_ct2": partial(decode_ours_ct2, ours_ct2, src, beam, args.out_len),
            }
            times = interleaved_times(systems, args.repeats)
            row = {}
            for name, rounds in times.items():
                seconds = statistics.median(rounds)
                row[name] = {"seconds": seconds, "sentences_per_s": args.batch / seconds}
                print(f"beam {beam} {name:15s} {args.batch / seconds:8.1f} sent/s")
            sps = {k: v["sentences_per_s"] for k, v in row.items()}
            row["ratio_vs_hf"] = sps["transformer_mt"] / sps["hf_marian"]
            row["ratio_vs_ctranslate2"] = sps["transformer_mt"] / sps["ctranslate2"]
            row["per_round_ratio_vs_hf"] = round_ratios(times, "transformer_mt", "hf_marian")
            row["per_round_ratio_vs_ctranslate2"] = round_ratios(
                times, "transformer_mt", "ctranslate2"
            )
            row["per_round_ratio_ours_ct2_vs_hf"] = round_ratios(
                times, "transformer_mt_ct2", "hf_marian"
            )
            row["per_round_ratio_ours_ct2_vs_marian_ct2"] = round_ratios(
                times, "transformer_mt_ct2", "ctranslate2"
            )
            row["round_seconds"] = times
            print(f"beam {beam} ours / HF per round: {row['per_round_ratio_vs_hf']}")
            results["decoding"][f"beam{beam}"] = row

    batch = random_batch(args.batch, args.src_len, args.out_len, seed=2)
    ours.train()
    marian.train()
    hf_mask = torch.ones_like(batch["src"])
    steps = {
        "transformer_mt": train_step(
            lambda b: ours(b["src"], b["tgt_in"]), list(ours.parameters()), batch
        ),
        "hf_marian": train_step(
            lambda b: (
                marian(
                    input_ids=b["src"], attention_mask=hf_mask, decoder_input_ids=b["tgt_in"]
                ).logits
            ),
            list(marian.parameters()),
            batch,
        ),
    }
    tokens = batch["tgt_out"].numel()
    fb_times = interleaved_times(steps, args.repeats)
    fb = {k: tokens / statistics.median(t) for k, t in fb_times.items()}
    fb["ratio_vs_hf"] = fb["transformer_mt"] / fb["hf_marian"]
    results["forward_backward"] = {
        "target_tokens_per_s": fb,
        "per_round_ratio_vs_hf": round_ratios(fb_times, "transformer_mt", "hf_marian"),
        "round_seconds": fb_times,
    }
    print(f"forward+backward tokens/s: ours {fb['transformer_mt']:.0f}  HF {fb['hf_marian']:.0f}")

    report = {
        "benchmark": "model_speed",
        "settings": {
            **vars(args),
            "out": str(args.out),
            "d_model": D_MODEL,
            "d_ff": D_FF,
            "num_heads": HEADS,
            "layers": f"{LAYERS}+{LAYERS}",
            "vocab": VOCAB,
            "weights": "random",
            "fixed_output": "end of sentence blocked until out_len, then forced",
            "statistic": f"median of {args.repeats} interleaved rounds after 1 warm-up; "
            "per-round ratios: ours / peer within each round",
            "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
        },
        "machine": machine_info(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
