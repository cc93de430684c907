"""Reading input lines as they arrive and writing translations in the documented formats.

`line_chunks` reads on a thread and hands the translator whatever lines have arrived when it is
ready for more (at least one, at most `buffer_size`): typed lines are answered at once, a piped
file is translated in full batches, and the output keeps input order either way.

Output formats (`write_translations`):
- plain: one line per input line, the best translation (empty for an empty input line);
- n-best (`nbest > 1`, or `scores=True`): one row per hypothesis,
  ``line<TAB>rank<TAB>score<TAB>translation``, with the 0-based input line number, the 1-based
  rank (1 = best), and the search's length-normalized log-probability (for beam search
  ``sum log p / len ** len_penalty``, len counting the EOS; 0.0 for an empty input line).
"""

from __future__ import annotations

import gzip
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from transformer_mt.inference.translator import Translation

_END = object()


def _decode(raw: bytes, source: str, number: int) -> str:
    try:
        return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as err:
        message = f"{source}:{number}: invalid UTF-8 at byte {err.start} of the line"
        raise ValueError(message) from None


def _read_into(stream: BinaryIO, source: str, out: queue.Queue) -> None:
    try:
        for number, raw in enumerate(stream, start=1):
            out.put(_decode(raw, source, number))
    except BaseException as err:  # noqa: BLE001 - handed to the reading thread's consumer
        out.put(err)
    out.put(_END)


def line_chunks(stream: BinaryIO, buffer_size: int, source: str = "<stdin>") -> Iterator[list[str]]:
    """Lists of decoded lines (without their line endings) from a binary stream.

    Each list holds the lines that had arrived when it was asked for (blocking for the first),
    at most `buffer_size`. Invalid UTF-8 raises ValueError naming `source` and the line.
    """
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
    lines: queue.Queue = queue.Queue(maxsize=4 * buffer_size)
    threading.Thread(target=_read_into, args=(stream, source, lines), daemon=True).start()
    done = False
    while not done:
        chunk: list[str] = []
        item = lines.get()
        while True:
            if item is _END:
                done = True
                break
            if isinstance(item, BaseException):
                raise item
            chunk.append(item)
            if len(chunk) >= buffer_size:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        if chunk:
            yield chunk


def open_input(path: str | Path) -> BinaryIO:
    """A binary stream of the file (``.gz`` decompressed), with a clear error when missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input={path}: no such file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def format_translation(translation: Translation, with_scores: bool) -> str:
    """The output lines for one input line (see the module docstring), newline-terminated."""
    if not with_scores:
        return translation.text + "\n"
    return "".join(
        f"{translation.line}\t{rank}\t{candidate.score:.4f}\t{candidate.text}\n"
        for rank, candidate in enumerate(translation.candidates, start=1)
    )


def write_translations(translations: Iterable[Translation], out: TextIO, with_scores: bool) -> int:
    """Write each translation as it comes (flushed, for interactive use); return the count."""
    count = 0
    for translation in translations:
        out.write(format_translation(translation, with_scores))
        out.flush()
        count += 1
    return count
