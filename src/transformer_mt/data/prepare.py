"""Encoding a split once into flat, memory-mapped arrays.

Layout of a prepared split folder (all little-endian raw arrays, described by meta.json):
    src_tokens.bin  all source ids (pieces + </s>) back to back      (N_src_tokens,)
    tgt_tokens.bin  all target ids (pieces only)                      (N_tgt_tokens,)
    src_offsets.bin / tgt_offsets.bin  int64 start of pair i; [N] = total   (N + 1,)
    line_numbers.bin  int64 1-based line of pair i in the split file  (N,)
Token ids are uint16 when the vocabulary fits, else int32. Encoding uses SentencePiece's
multi-threaded batch encoder; flattening uses numpy (no Python loop over tokens). Every file's
size follows from meta.json (`expected_sizes`), which is how a damaged entry is recognized.
"""

from __future__ import annotations

import itertools
import json
import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from transformer_mt.data.cache import build_atomically
from transformer_mt.data.corpus import SplitSource
from transformer_mt.data.readers import ReadStats
from transformer_mt.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAYS = ("src_tokens", "tgt_tokens", "src_offsets", "tgt_offsets", "line_numbers")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def _flatten(ids: list[list[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Flat token array and per-sequence lengths, built in C (chain + fromiter)."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


class _Writer:
    """Appends flat token arrays and offsets to raw files (opened in an ExitStack)."""

    def __init__(self, folder: Path, dtypes: dict[str, np.dtype], stack: ExitStack) -> None:
        files = {n: open(folder / f"{n}.bin", "wb") for n in ARRAYS}  # noqa: SIM115
        self.files = {n: stack.enter_context(f) for n, f in files.items()}  # closed by the stack
        self.dtypes, self.totals, self.pairs = dtypes, {"src": 0, "tgt": 0}, 0
        for side in ("src", "tgt"):
            self.files[f"{side}_offsets"].write(np.zeros(1, np.int64).tobytes())

    def add(self, side: str, ids: list[list[int]]) -> None:
        flat, lengths = _flatten(ids, self.dtypes[side])
        offsets = self.totals[side] + np.cumsum(lengths)  # (n,) end of each sequence
        self.files[f"{side}_tokens"].write(flat.tobytes())
        self.files[f"{side}_offsets"].write(offsets.astype(np.int64).tobytes())
        self.totals[side] += int(lengths.sum())


def _encode_into(folder: Path, source: SplitSource, tokenizer: Tokenizer, stats: ReadStats) -> dict:
    dtypes = {
        "src": token_dtype(tokenizer.src_vocab_size),
        "tgt": token_dtype(tokenizer.tgt_vocab_size),
    }
    with ExitStack() as stack:
        writer = _Writer(folder, dtypes, stack)
        for chunk in source.read(stats):
            writer.add("src", tokenizer.encode_src(chunk.src))
            writer.add("tgt", tokenizer.encode_tgt(chunk.tgt))
            writer.files["line_numbers"].write(np.asarray(chunk.line_numbers, np.int64).tobytes())
            writer.pairs += len(chunk.src)
    return {
        "format_version": FORMAT_VERSION,
        "pairs": writer.pairs,
        "lines": stats.lines,
        "empty_dropped": stats.empty_dropped,
        "empty_examples": stats.empty_examples,
        "src_dtype": dtypes["src"].str,
        "tgt_dtype": dtypes["tgt"].str,
        "src_tokens": writer.totals["src"],
        "tgt_tokens": writer.totals["tgt"],
        "files": [str(p) for p in source.files],
    }


def expected_sizes(meta: dict) -> dict[str, int]:
    """Bytes each array file must have according to meta.json."""
    pairs = meta["pairs"]
    return {
        "src_tokens": np.dtype(meta["src_dtype"]).itemsize * meta["src_tokens"],
        "tgt_tokens": np.dtype(meta["tgt_dtype"]).itemsize * meta["tgt_tokens"],
        "src_offsets": 8 * (pairs + 1),
        "tgt_offsets": 8 * (pairs + 1),
        "line_numbers": 8 * pairs,
    }


def entry_problem(folder: Path) -> str | None:
    """What is wrong with a prepared split folder (None: its files match meta.json)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        sizes = expected_sizes(meta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"meta.json unreadable ({type(err).__name__}: {err})"
    for name, size in sizes.items():
        path = folder / f"{name}.bin"
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual} bytes"
            return f"{path.name} is {found}, meta.json says {size} bytes"
    return None


def prepare_split(source: SplitSource, tokenizer: Tokenizer, folder: Path) -> Path:
    """Encode `source` into `folder` unless it is already there; returns `folder`.

    The folder appears only when complete (see `cache.build_atomically`), so an interrupted
    run leaves nothing the next run could mistake for prepared data; one whose files do not
    have the sizes meta.json gives (a truncated copy, a full disk) is reported and rebuilt.
    """

    def build(tmp: Path) -> None:
        stats = ReadStats()
        meta = _encode_into(tmp, source, tokenizer, stats)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if stats.empty_dropped:
            log.warning(
                "%s: dropped %d of %d pairs with an empty side (first at lines %s)",
                ", ".join(meta["files"]),
                stats.empty_dropped,
                stats.lines,
                stats.empty_examples,
            )

    if not folder.is_dir():
        log.info("preparing %s -> %s", ", ".join(map(str, source.files)), folder)
    return build_atomically(folder, build, check=entry_problem)
