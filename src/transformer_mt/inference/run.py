"""What `translate.py` does once the config is composed: pick the input, stream, write."""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from transformer_mt.inference.loading import OpenedModel
from transformer_mt.inference.streaming import line_chunks, open_input, write_translations
from transformer_mt.inference.translator import Translator

log = logging.getLogger(__name__)


@contextmanager
def _output(path: str) -> Iterator[TextIO]:
    """stdout for "-"; otherwise a temporary file renamed to `path` only when all is written."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _input(text: str | None, path: str) -> tuple[BinaryIO, str]:
    if text is not None:
        return io.BytesIO(text.encode("utf-8")), "text"
    if path == "-":
        return sys.stdin.buffer, "<stdin>"
    return open_input(path), path


def translate_command(
    opened: OpenedModel,
    *,
    text: str | None = None,
    input: str = "-",  # noqa: A002 - the config key users type
    output: str = "-",
    scores: bool = False,
    max_tokens: int = 4096,
    buffer_size: int = 1024,
) -> int:
    """Translate `text`, or every line of `input` ("-" = stdin), into `output`; return the
    number of lines translated. Rows carry scores when the search gives n-best lists."""
    stream, source = _input(text, input)
    translator = Translator(
        opened.tokenizer, opened.backend, max_tokens=max_tokens, source_name=source
    )
    with_scores = scores or opened.backend.nbest > 1
    start = time.perf_counter()
    with stream, _output(output) as out:
        chunks = line_chunks(stream, buffer_size, source)
        count = write_translations(translator.translate_stream(chunks), out, with_scores)
    seconds = time.perf_counter() - start
    log.info(
        "%d lines translated in %.2f s (model loaded in %.2f s)%s",
        count, seconds, opened.load_seconds, "" if output == "-" else f" -> {output}",
    )  # fmt: skip
    return count
