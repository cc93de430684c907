"""Data-pipeline figures: padding of token-bucketed batches, preparation and iteration speed.

    python -m benchmarks.data_pipeline [--data-root DIR] [--repeats 3]

Each timed phase runs in a fresh subprocess so that its peak RSS (ru_maxrss of the process and
of its DataLoader workers) is its own. The 3M-pair corpus is Multi30k de-en train repeated
(written as plain text into a temporary folder, never into the repository). Results go to
benchmarks/results/data_pipeline.json; medians where a phase is repeated.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
VOCAB = {"model_type": "unigram", "vocab_size": 8000, "joint": True}


def peak_rss_mib() -> float:
    """Peak RSS of this process and of its finished children (DataLoader workers), MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


# ---- phases (run inside a subprocess) ---------------------------------------------------------


def phase_tokenizer(args: dict) -> dict:
    from transformer_mt.data.corpus import TextPairSource
    from transformer_mt.data.tokenizer import TokenizerConfig
    from transformer_mt.data.vocab import load_or_train_tokenizer

    start = time.perf_counter()
    source = TextPairSource(Path(args["src"]), Path(args["tgt"]))
    load_or_train_tokenizer(source, TokenizerConfig(**VOCAB), Path(args["cache"]))
    return {"seconds": time.perf_counter() - start}


def _tokenizer(cache: str):
    from transformer_mt.data.tokenizer import Tokenizer

    return Tokenizer.load(next((Path(cache) / "tokenizers").iterdir()))


def phase_prepare(args: dict) -> dict:
    from transformer_mt.data.corpus import TextPairSource
    from transformer_mt.data.prepare import prepare_split

    tokenizer = _tokenizer(args["cache"])
    start = time.perf_counter()
    folder = prepare_split(
        TextPairSource(Path(args["src"]), Path(args["tgt"])), tokenizer, Path(args["out"])
    )
    seconds = time.perf_counter() - start
    pairs = json.loads((folder / "meta.json").read_text())["pairs"]
    return {"seconds": seconds, "pairs": pairs, "pairs_per_s": pairs / seconds}


def phase_iterate(args: dict) -> dict:
    from torch.utils.data import DataLoader

    from transformer_mt.data.batching import TokenBatchSampler
    from transformer_mt.data.prepared import PreparedSplit

    start = time.perf_counter()
    split = PreparedSplit(Path(args["out"]))
    sampler = TokenBatchSampler(*split.lengths(), max_tokens=4096, seed=1)
    loader = DataLoader(split, sampler=sampler, batch_size=None, num_workers=args["workers"])
    batches = pairs = tokens = 0
    for batch in loader:
        batches, pairs, tokens = batches + 1, pairs + len(batch), tokens + batch.num_tgt_tokens
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "batches": batches, "pairs": pairs, "pairs_per_s": pairs / seconds}


def phase_spm_alone(args: dict) -> dict:
    """SentencePiece's own batch encoding (lines already in memory), the ceiling for prepare."""
    tokenizer = _tokenizer(args["cache"])
    lines = (
        Path(args["src"]).read_text().split("\n")[:-1]
        + Path(args["tgt"]).read_text().split("\n")[:-1]
    )
    start = time.perf_counter()
    for i in range(0, len(lines), 1 << 16):
        tokenizer.encode_tgt(lines[i : i + (1 << 16)])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lines": len(lines), "lines_per_s": len(lines) / seconds}


PHASES = {
    f.__name__[6:]: f for f in (phase_tokenizer, phase_prepare, phase_iterate, phase_spm_alone)
}


def run_phase(name: str, **args) -> dict:
    """Run one phase in a fresh interpreter; returns its figures plus peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.data_pipeline", "--phase", name,
         json.dumps(args, default=str)],
        cwd=ROOT,
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


# ---- padding (in process, lengths only) -------------------------------------------------------


def padding_fraction(src: np.ndarray, tgt: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of pad tokens in the (B, S) source and (B, T) target tensors of all batches."""
    real = sum(int(src[b].sum() + tgt[b].sum()) for b in batches)
    padded = sum(len(b) * int(src[b].max() + tgt[b].max()) for b in batches)
    return 1 - real / padded


def random_batches(sizes: np.ndarray, order: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """The same token budget, pairs taken in a random order (no length sorting)."""
    batches, current, longest = [], [], 0
    for i in order.tolist():
        grown = max(longest, int(sizes[i]))
        if current and (len(current) + 1) * grown > max_tokens:
            batches.append(np.array(current))
            current, grown = [], int(sizes[i])
        current.append(i)
        longest = grown
    return [*batches, np.array(current)]


def padding_figures(prepared: Path, max_tokens: int = 4096) -> dict:
    from transformer_mt.data.batching import TokenBatchSampler
    from transformer_mt.data.prepared import PreparedSplit

    src, tgt = PreparedSplit(prepared).lengths()
    bucketed = TokenBatchSampler(src, tgt, max_tokens, seed=1).all_batches()
    order = np.random.default_rng(1).permutation(len(src))
    shuffled = random_batches(np.maximum(src, tgt), order, max_tokens)
    return {
        "max_tokens": max_tokens,
        "bucketed": {
            "padding_fraction": padding_fraction(src, tgt, bucketed),
            "batches": len(bucketed),
        },
        "random": {
            "padding_fraction": padding_fraction(src, tgt, shuffled),
            "batches": len(shuffled),
        },
    }


# ---- driver -----------------------------------------------------------------------------------


def write_corpus(data_root: Path, folder: Path, repeats: int) -> tuple[Path, Path]:
    """Multi30k de-en train as plain text, repeated `repeats` times."""
    paths = []
    for lang in ("de", "en"):
        text = gzip.decompress((data_root / "multi30k" / f"train.{lang}.gz").read_bytes())
        path = folder / f"train_x{repeats}.{lang}"
        with open(path, "wb") as f:
            for _ in range(repeats):
                f.write(text)
        paths.append(path)
    return paths[0], paths[1]


def repeated(n: int, name: str, **args) -> dict:
    """Median of `n` runs of a phase (each with a fresh output folder), plus all runs."""
    runs = []
    for i in range(n):
        out = {"out": f"{args['out_base']}_{i}"} if name == "prepare" else {}
        runs.append(run_phase(name, **args, **out))
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    return {**{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


def benchmark(data_root: Path, repeats: int, big_repeats: int, workers: int, tmp: Path) -> dict:
    src = data_root / "multi30k" / "train.de.gz"
    tgt = data_root / "multi30k" / "train.en.gz"
    cache = tmp / "cache"
    results: dict = {
        "tokenizer_training_multi30k": run_phase("tokenizer", src=src, tgt=tgt, cache=cache)
    }
    m30k = {"src": src, "tgt": tgt, "cache": cache, "out_base": tmp / "m30k"}
    results["multi30k"] = {"prepare": repeated(repeats, "prepare", **m30k)}
    results["multi30k"]["iterate_epoch"] = repeated(
        repeats, "iterate", out=tmp / "m30k_0", workers=workers
    )
    results["padding_multi30k"] = padding_figures(tmp / "m30k_0")
    big_src, big_tgt = write_corpus(data_root, tmp, big_repeats)
    big = {
        "src": big_src,
        "tgt": big_tgt,
        "cache": cache,
        "out_base": tmp / "big",
    }
    results["corpus_3m"] = {"prepare": repeated(1, "prepare", **big)}
    results["corpus_3m"]["iterate_epoch"] = repeated(
        1, "iterate", out=tmp / "big_0", workers=workers
    )
    results["sentencepiece_alone_3m"] = run_phase(
        "spm_alone", src=big_src, tgt=big_tgt, cache=cache
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each Multi30k phase")
    parser.add_argument("--big-repeats", type=int, default=104, help="copies of Multi30k train")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/data_pipeline.json")
    parser.add_argument("--phase", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        figures = PHASES[args.phase[0]](json.loads(args.phase[1]))
        print(json.dumps({**figures, "peak_rss_mib": peak_rss_mib()}))
        return
    with tempfile.TemporaryDirectory(prefix="tmt_bench_") as tmp:
        results = benchmark(args.data_root, args.repeats, args.big_repeats, args.workers, Path(tmp))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "tokenizer": VOCAB, "max_tokens": 4096, "dataloader_workers": args.workers,
            "encode_threads": os.cpu_count(), "multi30k_repeats": args.repeats,
            "corpus_3m": f"Multi30k de-en train x{args.big_repeats}, plain text, 1 run",
            "direction": "de-en",
        },
        "results": results,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
