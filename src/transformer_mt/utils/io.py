"""Reading user text files strictly and writing outputs atomically."""

import gzip
import os
import tempfile
from pathlib import Path


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` allowed), without their line endings.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid UTF-8, naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line"
            ) from None
    return out


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
