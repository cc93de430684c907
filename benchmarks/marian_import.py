"""An imported Marian model against MarianMTModel.generate on the same weights: agreement of
greedy and beam-5 outputs, and beam-5 speed through our PyTorch path and through CTranslate2.

The Marian model (d_model 256, 3+3 layers, 4 heads, d_ff 1024, swish: the model_speed.py size)
is built from a config and trained for `--steps` updates with transformers' own loss on
Multi30k en->de, with a SentencePiece model trained here on the same data, so its outputs end
as a trained model's do. It is saved as `save_pretrained` writes it, imported with
`import_marian`, and decoded on Multi30k val by both.

    PYTHONPATH=src python -m benchmarks.marian_import [--steps 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

from benchmarks.machine import machine_info
from benchmarks.model_speed import interleaved_times, round_ratios
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig, train_sentencepiece
from transformer_mt.decoding import BeamSearch, GreedySearch
from transformer_mt.formats.ctranslate2 import export_ctranslate2
from transformer_mt.formats.marian import import_marian
from transformer_mt.inference import TorchBackend, Translator
from transformer_mt.inference.translator import token_budget_batches
from transformer_mt.utils.io import read_lines


def marian_folder(folder: Path, train: list[tuple[str, str]], vocab_size: int):
    """A Marian folder with a SentencePiece model and vocab.json in Marian's id order."""
    from transformers import MarianTokenizer

    lines = [side for pair in train for side in pair]
    proto = train_sentencepiece(
        iter(lines), vocab_size, 1.0, TokenizerConfig(vocab_size=vocab_size)
    )
    pieces = Tokenizer(proto).tgt_vocabulary()[4:]
    vocab = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(pieces)}}
    vocab["<pad>"] = len(vocab)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(proto)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"source_lang": "en", "target_lang": "de", "separate_vocabs": False})
    )
    return len(vocab), MarianTokenizer.from_pretrained(folder)


def build_marian(vocab: int):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=256, encoder_layers=3,
        decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=1024, decoder_ffn_dim=1024, activation_function="swish", dropout=0.1,
        max_position_embeddings=256, scale_embedding=True, pad_token_id=vocab - 1,
        eos_token_id=0, decoder_start_token_id=vocab - 1, forced_eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return MarianMTModel(config)


def fit(model, tokenizer, train: list[tuple[str, str]], steps: int, max_tokens: int) -> float:
    """Adam with warm-up and inverse square root decay, token-budget batches; seconds."""
    start, gen = time.perf_counter(), torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / 100, (100 / (s + 1)) ** 0.5)
    )
    lengths = [len(s.split()) + 2 for s, _ in train]
    batches = token_budget_batches(lengths, max_tokens // 2)
    model.train()
    for step in range(steps):
        rows = batches[int(torch.randint(len(batches), (1,), generator=gen))]
        batch = tokenizer([train[i][0] for i in rows], text_target=[train[i][1] for i in rows],
                          padding=True, return_tensors="pt")  # fmt: skip
        batch["labels"][batch["labels"] == model.config.pad_token_id] = -100
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"update {step}: loss {loss.item():.3f}", flush=True)
    model.eval()
    return time.perf_counter() - start


def hf_generate(model, tokenizer, lines: list[str], beams: int, max_tokens: int) -> list[str]:
    out = [""] * len(lines)
    lengths = [len(ids) for ids in tokenizer(lines)["input_ids"]]
    for batch in token_budget_batches(lengths, max_tokens):
        inputs = tokenizer([lines[i] for i in batch], padding=True, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(
                **inputs, num_beams=beams, do_sample=False, max_new_tokens=64,
                min_new_tokens=1, early_stopping=True, length_penalty=1.0,
                bad_words_ids=[[model.config.pad_token_id]],
            )  # fmt: skip
        for i, text in zip(batch, tokenizer.batch_decode(ids, skip_special_tokens=True),
                           strict=True):  # fmt: skip
            out[i] = text
    return out


def ours(translator: Translator, lines: list[str]) -> list[str]:
    return [t.text for t in translator.translate(lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/marian_import.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_root / "multi30k"
    train = list(
        zip(read_lines(root / "train.en.gz"), read_lines(root / "train.de.gz"), strict=True)
    )
    val, refs = read_lines(root / "val.en.gz"), read_lines(root / "val.de.gz")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "marian"
        folder.mkdir()
        vocab, hf_tokenizer = marian_folder(folder, train, args.vocab)
        model = build_marian(vocab)
        train_seconds = fit(model, hf_tokenizer, train, args.steps, args.max_tokens)
        model.save_pretrained(folder)
        loaded = import_marian(folder)
        ct2 = export_ctranslate2(loaded.model, loaded.tokenizer, loaded.info,
                                 Path(tmp) / "ct2", quantization="int8")  # fmt: skip
        report = measure(args, model, hf_tokenizer, loaded, ct2, val, refs)
    report["settings"] |= {"train_updates": args.steps, "train_seconds": train_seconds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report["results"], indent=2))


def measure(args, model, hf_tokenizer, loaded, ct2_dir, val, refs) -> dict:
    from transformer_mt.inference.ctranslate2 import CTranslate2Backend

    load_before = os.getloadavg()
    results: dict = {"agreement": {}, "bleu": {}}
    for name, beams, search in (("greedy", 1, GreedySearch(max_len_a=0, max_len_b=64)),
                                ("beam5", 5, BeamSearch(max_len_a=0, max_len_b=64))):  # fmt: skip
        translator = Translator(loaded.tokenizer, TorchBackend(loaded.model, search),
                                max_tokens=args.max_tokens)  # fmt: skip
        a, b = ours(translator, val), hf_generate(model, hf_tokenizer, val, beams, args.max_tokens)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        results["agreement"][name] = {"identical": same, "sentences": len(val),
                                      "share": same / len(val)}  # fmt: skip
        results["bleu"][name] = {"ours": sacrebleu.corpus_bleu(a, [refs]).score,
                                 "hf": sacrebleu.corpus_bleu(b, [refs]).score}  # fmt: skip
        print(name, results["agreement"][name], results["bleu"][name], flush=True)
    beam = BeamSearch(max_len_a=0, max_len_b=64)
    budget = args.max_tokens
    torch_t = Translator(loaded.tokenizer, TorchBackend(loaded.model, beam), max_tokens=budget)
    ct2_backend = CTranslate2Backend(ct2_dir, beam, intra_threads=args.threads)
    ct2_t = Translator(loaded.tokenizer, ct2_backend, max_tokens=budget)
    systems = {
        "ours_torch": lambda: ours(torch_t, val),
        "ours_ct2_int8": lambda: ours(ct2_t, val),
        "hf_generate": lambda: hf_generate(model, hf_tokenizer, val, 5, args.max_tokens),
    }
    times = interleaved_times(systems, args.rounds)
    results["beam5_sentences_per_s"] = {
        k: len(val) / statistics.median(v) for k, v in times.items()
    }
    results["per_round_ratio_vs_hf"] = {k: round_ratios(times, k, "hf_generate")
                                        for k in ("ours_torch", "ours_ct2_int8")}  # fmt: skip
    results["round_seconds"] = times
    return {
        "benchmark": "marian_import",
        "settings": {
            "sentences": len(val),
            "rounds": args.rounds,
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "vocab": loaded.info.config.tgt_vocab_size,
            "decoding": "max 64 new tokens, min 1, length penalty 1, early stopping",
            "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },  # fmt: skip
        "machine": machine_info(),
        "results": results,
    }


if __name__ == "__main__":
    main()
