"""End-to-end translation speed on real sentences: translate.py's path with each backend, raw
CTranslate2 and Hugging Face Marian, in the same interleaved rounds.

Multi30k val (1,014 sentences) with a trained checkpoint, beam 5, through the code translate.py
runs (`transformer_mt.inference.run.translate_command`: read the file, tokenize, batch by
tokens, search, detokenize, write the file); the model load is timed apart. Paths:

- `ours_torch`: this package's PyTorch model (from a release folder of the checkpoint);
- `ours_ct2_float32`, `ours_ct2_int8`: the same weights exported to CTranslate2
  (`export.py format=ctranslate2`), through `backend=ctranslate2`;
- `ct2_int8_raw` / `ct2_float32_raw` (peers): CTranslate2's own `translate_batch` on the same
  converted models with pre-tokenized input (no file, no tokenizer, one call);
- `hf_marian` (peer): `MarianMTModel.generate`, beam 5, random weights of the same dimensions
  (it cannot load ours), forced to produce as many tokens per sentence as our translation has
  (re-encoded), in batches of equal output length under the same token budget.

    PYTHONPATH=src python -m benchmarks.translate_speed --ckpt <run dir> [--average-last 3]

BLEU (cased sacreBLEU, 13a) is computed for every path but HF's (random weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sacrebleu
import torch

from benchmarks.machine import machine_info
from benchmarks.model_speed import build_marian, interleaved_times, round_ratios
from transformer_mt.decoding import BeamSearch
from transformer_mt.formats import load_model, write_release
from transformer_mt.formats.ctranslate2 import export_ctranslate2
from transformer_mt.inference.loading import OpenedModel, ctranslate2_backend, torch_backend
from transformer_mt.inference.run import translate_command
from transformer_mt.inference.translator import token_budget_batches
from transformer_mt.utils.io import read_lines


def cli_path(opened: OpenedModel, source: Path, out: Path, max_tokens: int) -> list[str]:
    """translate.py's own code from the input file to the output file."""
    translate_command(opened, input=str(source), output=str(out), max_tokens=max_tokens)
    return read_lines(out)


def raw_ct2(translator, pieces: list[list[str]], tokenizer, beam: int, max_tokens: int) -> list:
    """CTranslate2's translate_batch on pre-tokenized sources (its own token-budget batching)."""
    longest = max(map(len, pieces))
    results = translator.translate_batch(
        pieces, beam_size=beam, max_batch_size=max_tokens, batch_type="tokens",
        max_decoding_length=math.floor(1.2 * longest + 10), suppress_sequences=[["<s>"]],
    )  # fmt: skip
    return results


def detokenize(results, tokenizer) -> list[str]:
    piece_to_id = tokenizer._tgt.piece_to_id  # noqa: SLF001 - benchmark-only shortcut
    return tokenizer.decode_tgt([[piece_to_id(p) for p in r.hypotheses[0]] for r in results])


def hf_batches(src: list[list[int]], out_lengths: list[int], max_tokens: int) -> list[tuple]:
    """(source ids (B, S), number of tokens to generate) per batch: sentences grouped by the
    length of our translation, then by the token budget."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, length in enumerate(out_lengths):
        by_length[length].append(i)
    batches = []
    for length, rows in sorted(by_length.items()):
        for batch in token_budget_batches([len(src[i]) for i in rows], max_tokens):
            ids = [src[rows[k]] for k in batch]
            width = max(map(len, ids))
            tensor = torch.full((len(ids), width), 0, dtype=torch.long)
            mask = torch.zeros_like(tensor)
            for b, row in enumerate(ids):
                tensor[b, : len(row)], mask[b, : len(row)] = torch.tensor(row), 1
            batches.append((tensor, mask, length))
    return batches


def hf_generate(marian, batches: list[tuple], beam: int) -> int:
    tokens = 0
    with torch.inference_mode():
        for ids, mask, length in batches:
            out = marian.generate(
                input_ids=ids, attention_mask=mask, num_beams=beam, do_sample=False,
                max_new_tokens=length, min_new_tokens=length,
            )  # fmt: skip
            tokens += (out.shape[1] - 1) * out.shape[0]
    return tokens


def prepare(args: argparse.Namespace, tmp: Path) -> dict:
    """Release and CTranslate2 folders of the checkpoint, and the opened paths with their
    load times."""
    loaded = load_model(ckpt_path=args.ckpt, average_last=args.average_last)
    release = write_release(loaded, tmp / "release")
    search = BeamSearch(beam_size=args.beam)
    opened = {"ours_torch": torch_backend(search=search, model_dir=release, device="cpu")}
    for quantization in ("float32", "int8"):
        folder = export_ctranslate2(
            loaded.model, loaded.tokenizer, loaded.info, tmp / f"ct2_{quantization}",
            quantization=quantization,
        )  # fmt: skip
        opened[f"ours_ct2_{quantization}"] = ctranslate2_backend(
            search=search, model_dir=folder, intra_threads=args.threads
        )
    return {"loaded": loaded, "opened": opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt", required=True, help="a .ckpt or a run directory")
    parser.add_argument("--average-last", type=int, default=None)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="de")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, every path")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/translate_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    sources = read_lines(args.data_root / "multi30k" / f"val.{args.src}.gz")
    references = read_lines(args.data_root / "multi30k" / f"val.{args.tgt}.gz")
    import ctranslate2

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ready = prepare(args, tmp)
        loaded, opened = ready["loaded"], ready["opened"]
        tokenizer = loaded.tokenizer
        source_file = tmp / "val.src"
        source_file.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
        pieces = [tokenizer.src_pieces(s) for s in sources]
        raw = {
            q: ctranslate2.Translator(
                str(tmp / f"ct2_{q}"), device="cpu", intra_threads=args.threads, inter_threads=1
            )
            for q in ("float32", "int8")
        }
        outputs: dict[str, list[str]] = {}

        def ours(name: str) -> Callable[[], None]:
            def run() -> None:
                outputs[name] = cli_path(opened[name], source_file, tmp / f"{name}.out",
                                         args.max_tokens)  # fmt: skip

            return run

        def peer(q: str) -> Callable[[], None]:
            def run() -> None:
                results = raw_ct2(raw[q], pieces, tokenizer, args.beam, args.max_tokens)
                outputs[f"ct2_{q}_raw"] = results

            return run

        ours("ours_torch")()  # our outputs fix the lengths HF must produce
        out_lengths = [len(t) + 1 for t in tokenizer.encode_tgt(outputs["ours_torch"])]
        c = loaded.info.config
        marian = build_marian(c.d_model, c.d_ff, c.num_heads, c.num_encoder_layers,
                              c.src_vocab_size).eval()  # fmt: skip
        batches = hf_batches(tokenizer.encode_src(sources), out_lengths, args.max_tokens)
        systems = {name: ours(name) for name in opened}
        systems |= {f"ct2_{q}_raw": peer(q) for q in raw}
        systems["hf_marian"] = partial(hf_generate, marian, batches, args.beam)
        times = interleaved_times(systems, args.rounds)
        report = summarize(args, times, outputs, opened, references, tokenizer, out_lengths)
    report["settings"]["load_average_1_5_15min"] = {"before": load_before, "after": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report["results"], indent=2))


def summarize(args, times, outputs, opened, references, tokenizer, out_lengths) -> dict:
    n = len(references)
    texts = {k: v for k, v in outputs.items() if not k.endswith("_raw")}
    texts |= {k: detokenize(v, tokenizer) for k, v in outputs.items() if k.endswith("_raw")}
    rows = {}
    for name, rounds in times.items():
        seconds = statistics.median(rounds)
        row = {"seconds": seconds, "sentences_per_s": n / seconds}
        if name in texts:
            row["bleu"] = sacrebleu.corpus_bleu(texts[name], [references]).score
        if name in opened:
            row["load_seconds"] = opened[name].load_seconds
        rows[name] = row
    ratios = {
        "ours_ct2_int8_vs_hf": round_ratios(times, "ours_ct2_int8", "hf_marian"),
        "ours_ct2_int8_vs_raw_ct2_int8": round_ratios(times, "ours_ct2_int8", "ct2_int8_raw"),
        "ours_ct2_float32_vs_raw_ct2_float32": round_ratios(
            times, "ours_ct2_float32", "ct2_float32_raw"
        ),
        "ours_torch_vs_hf": round_ratios(times, "ours_torch", "hf_marian"),
        "ours_ct2_float32_vs_ours_torch": round_ratios(times, "ours_ct2_float32", "ours_torch"),
    }
    bleu_gap = {k: rows[k]["bleu"] - rows["ours_torch"]["bleu"] for k in rows if "bleu" in rows[k]}
    return {
        "benchmark": "translate_speed",
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "sentences": n,
            "hf_weights": "random, same dimensions; forced to our per-sentence output lengths "
            f"({sum(out_lengths)} tokens in all)",
            "statistic": f"median of {args.rounds} interleaved rounds after 1 warm-up; "
            "per-round ratios: first / second within each round",
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "machine": machine_info(),
        "results": {
            "paths": rows,
            "per_round_ratios": ratios,
            "bleu_minus_ours_torch": bleu_gap,
            "round_seconds": times,
        },  # fmt: skip
    }


if __name__ == "__main__":
    main()
