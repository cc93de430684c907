"""Readers for parallel corpora: aligned text files (optionally gzip) and TSV files.

Both read in blocks of bytes rather than line by line (millions of lines must stream fast), check
UTF-8 strictly (an error names the file and line), and yield chunks of aligned pairs. A pair with
an empty (or whitespace-only) side is dropped and counted, never silently.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from transformer_mt.utils.io import check_text_bytes

BLOCK_BYTES = 1 << 23  # 8 MiB per read: large enough to amortize Python overhead


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file (and line)."""


def open_binary(path: Path) -> IO[bytes]:
    """Open `path` for reading bytes, gunzipping when the name ends in `.gz`."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def describe_missing(path: Path) -> str:
    """Say that `path` is missing and list what its nearest existing folder holds."""
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    listing = ", ".join(found) if found else "(nothing)"
    return f"file not found: {path}; {folder} contains: {listing}"


def require_file(path: Path) -> Path:
    """Return `path` if it is a file, else raise a `CorpusError` listing what exists."""
    if not path.is_file():
        raise CorpusError(describe_missing(path))
    return path


class LineReader:
    """Decodes a (gzip) text file block by block and hands out lines on demand.

    Lines are split on "\\n" only (not `str.splitlines`, which also splits on U+2028 and
    friends and would misalign a parallel corpus); a trailing "\\r" is removed; a UTF-8
    byte-order mark at the start of the file is dropped. A NUL byte or a "\\r" without "\\n"
    is an error naming the line: a binary/UTF-16 file or "\\r"-only line endings would
    otherwise show up only as a puzzling line-count mismatch.
    """

    def __init__(self, path: Path) -> None:
        self.path = require_file(path)
        self._file = open_binary(path)
        self._lines: list[str] = []
        self._pos = 0
        self._rest = b""
        self._lines_read = 0  # lines decoded so far, for error line numbers
        self._eof = False
        self._first = True

    def close(self) -> None:
        self._file.close()

    def take(self, n: int) -> list[str]:
        """Return up to `n` next lines (fewer only at the end of the file)."""
        out: list[str] = []
        while len(out) < n:
            if self._pos >= len(self._lines) and not self._fill():
                break
            stop = min(len(self._lines), self._pos + n - len(out))
            out.extend(self._lines[self._pos : stop])
            self._pos = stop
        return out

    def count_rest(self) -> int:
        """Count the lines not yet taken (used to report mismatched line counts)."""
        total = len(self._lines) - self._pos
        while self._fill():
            total += len(self._lines)
        self._pos = len(self._lines)
        return total

    def _fill(self) -> bool:
        """Decode the next block into `self._lines`; False at the end of the file."""
        if self._eof:
            return False
        data = self._rest + self._file.read(BLOCK_BYTES)
        if len(data) == len(self._rest):  # nothing more to read
            self._eof = True
            if not data:
                return False
            data += b"\n"  # last line without a final newline
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a block without newline: keep reading
            self._check(data[:-1])  # its last byte may be the \r of a \r\n split by the read
            self._rest = data
            return self._fill()
        block, self._rest = data[:cut], data[cut:]
        if self._first and block.startswith(b"\xef\xbb\xbf"):
            block = block[3:]
        self._first = False
        self._check(block)
        self._lines = self._decode(block).split("\n")[:-1]
        self._lines_read += len(self._lines)
        self._pos = 0
        if b"\r\n" in block:  # a line ends with \r (one C search, not a check per line)
            self._lines = [line.removesuffix("\r") for line in self._lines]
        return True

    def _check(self, block: bytes) -> None:
        try:
            check_text_bytes(block, self.path, self._lines_read + 1)
        except ValueError as err:
            raise CorpusError(str(err)) from None

    def _decode(self, block: bytes) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError as err:
            line = self._lines_read + block.count(b"\n", 0, err.start) + 1
            column = err.start - block.rfind(b"\n", 0, err.start)
            raise CorpusError(
                f"{self.path}:{line}: invalid UTF-8 ({err.reason}) at byte {column} of the line"
            ) from None


@dataclass
class ReadStats:
    """What a reader saw: lines read and pairs dropped because a side was empty."""

    lines: int = 0
    empty_dropped: int = 0
    empty_examples: list[int] = field(default_factory=list)  # first few 1-based line numbers


@dataclass
class PairChunk:
    """Aligned pairs from one block of lines; `line_numbers` are 1-based file lines."""

    src: list[str]
    tgt: list[str]
    line_numbers: list[int]


def _keep_non_empty(src: list[str], tgt: list[str], first_line: int, stats: ReadStats) -> PairChunk:
    """Drop pairs with an empty side, counting them in `stats`."""
    keep = [i for i, (s, t) in enumerate(zip(src, tgt, strict=True)) if s.strip() and t.strip()]
    stats.lines += len(src)
    if len(keep) == len(src):
        return PairChunk(src, tgt, list(range(first_line, first_line + len(src))))
    dropped = sorted(set(range(len(src))) - set(keep))
    stats.empty_dropped += len(dropped)
    stats.empty_examples.extend(first_line + i for i in dropped[: 5 - len(stats.empty_examples)])
    return PairChunk([src[i] for i in keep], [tgt[i] for i in keep], [first_line + i for i in keep])


def read_text_pairs(
    src_path: Path, tgt_path: Path, stats: ReadStats, chunk_size: int = 1 << 16
) -> Iterator[PairChunk]:
    """Yield aligned pairs from two line-aligned files; different line counts are an error."""
    src_reader, tgt_reader = LineReader(src_path), LineReader(tgt_path)
    try:
        first = 1
        while True:
            src, tgt = src_reader.take(chunk_size), tgt_reader.take(chunk_size)
            if len(src) != len(tgt) or (not src and tgt):
                n_src = first - 1 + len(src) + src_reader.count_rest()
                n_tgt = first - 1 + len(tgt) + tgt_reader.count_rest()
                raise CorpusError(
                    f"line counts differ: {src_path} has {n_src} lines, "
                    f"{tgt_path} has {n_tgt} lines"
                )
            if not src:
                return
            yield _keep_non_empty(src, tgt, first, stats)
            first += len(src)
    finally:
        src_reader.close()
        tgt_reader.close()


def read_tsv_pairs(
    path: Path, src_column: int, tgt_column: int, stats: ReadStats, chunk_size: int = 1 << 16
) -> Iterator[PairChunk]:
    """Yield (src, tgt) pairs from the given 0-based columns of a tab-separated file.

    A fully empty line is an empty pair (dropped and counted); a line with too few columns is
    an error naming the file, the line and the columns found.
    """
    need = max(src_column, tgt_column) + 1
    reader = LineReader(path)
    try:
        first = 1
        while lines := reader.take(chunk_size):
            rows = [line.split("\t") for line in lines]
            for i, row in enumerate(rows):
                if len(row) < need and lines[i].strip():
                    raise CorpusError(
                        f"{path}:{first + i}: expected at least {need} tab-separated columns "
                        f"(source column {src_column}, target column {tgt_column}), "
                        f"found {len(row)}: {row!r}"
                    )
            src = [row[src_column] if len(row) >= need else "" for row in rows]
            tgt = [row[tgt_column] if len(row) >= need else "" for row in rows]
            yield _keep_non_empty(src, tgt, first, stats)
            first += len(lines)
    finally:
        reader.close()
