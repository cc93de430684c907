"""Reading user text files strictly and writing outputs atomically and durably.

An output is written to a temporary file *in its own directory* (so the final rename never
crosses a filesystem and never degrades to a copy over the old file), flushed and fsynced,
given the mode a plain ``open`` would give it, renamed over the target, and the directory is
fsynced so that the rename itself survives a crash. A kill at any moment leaves either the old
file or the new one, plus at worst a temporary file that `remove_stale_temporaries` deletes
once the process that made it is gone.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
# NUL: a binary or UTF-16 file; \r without \n: old Mac line endings or a stray control byte
_BAD_BYTES = (
    (re.compile(b"\x00"), "a NUL byte", "a binary or UTF-16 file? convert it to UTF-8 text"),
    (re.compile(b"\r(?!\n)"), "a carriage return (\\r) not followed by a newline",
     "\\r-only (classic Mac) line endings? convert them with: tr '\\r' '\\n'"),
)  # fmt: skip


def check_text_bytes(data: bytes, path: Path | str, first_line: int) -> None:
    """Raise ``ValueError`` naming the file and line for a NUL byte or a lone carriage return.

    A NUL byte means a binary or UTF-16 file; a ``\\r`` not followed by ``\\n`` means old Mac
    line endings (or a stray control character), which would otherwise surface later as a
    confusing line-count mismatch. `data` holds whole lines starting at line `first_line`.
    """
    for pattern, problem, fix in _BAD_BYTES:
        found = pattern.search(data)
        if found:
            at = found.start()
            line = first_line + data.count(b"\n", 0, at)
            column = at - data.rfind(b"\n", 0, at)
            raise ValueError(f"{path}:{line}: {problem} at byte {column} of the line ({fix})")


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file (``.gz`` allowed), without their line endings.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid UTF-8, a NUL byte or a lone ``\\r``, naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    check_text_bytes(raw, path, 1)
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


def default_mode(kind: str = "file") -> int:
    """The mode ``open`` (0o666) or ``mkdir`` (0o777) would give under the current umask;
    ``mkstemp`` / ``mkdtemp`` make private (0o600 / 0o700) entries instead."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if kind == "dir" else 0o666) & ~umask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (its directory entry reaches the disk)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(name: str) -> str:
    """Prefix of a temporary sibling of `name`: hidden, and carrying host and pid so that a
    leftover can be told from the work of a process still running."""
    return f".{name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}-"


def owner_gone(tmp_name: str) -> bool:
    """True if temporary entry `tmp_name` was made on this host by a process that is gone."""
    try:
        host, pid = tmp_name.split(TMP_MARK, 1)[1].rsplit("-", 2)[:2]
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return host == socket.gethostname()
    except (ValueError, IndexError, PermissionError):
        return False
    return False


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files and folders that interrupted atomic writes left in `folder`
    (only those whose process is gone: another one may still be writing its own)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f"*{TMP_MARK}*"):
        if owner_gone(tmp.name):
            log.info("removing the leftover of an interrupted write: %s", tmp)
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` only when the ``with`` block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def share_permissions(folder: Path) -> None:
    """Give `folder` and its files the modes a plain mkdir and open would: mkdtemp makes a
    private (0700) folder, and an exported model is meant to be shared."""
    folder.chmod(default_mode("dir"))
    for path in folder.iterdir():
        path.chmod(default_mode("dir" if path.is_dir() else "file"))


def publish_directory(
    out: str | Path, build: Callable[[Path], None], *, force: bool = False
) -> Path:
    """Fill a folder with `build(tmp)` under a temporary sibling name, fsync its files, then
    rename it to `out`: an interrupted export never leaves a half-written folder (its
    leftover is removed by the next export into the same parent). With `force`, an existing
    `out` is moved aside and deleted only once the new folder is in place.

    Raises:
        ValueError: `out` exists and is not empty, and `force` is false.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ValueError(f"out={out} exists and is not empty; choose another or set force=true")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    try:
        build(tmp)
        for path in tmp.iterdir():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        share_permissions(tmp)
        if out.exists():
            aside = out.parent / f"{temp_prefix(out.name)}old"
            os.replace(out, aside)
            os.replace(tmp, out)
            shutil.rmtree(aside) if aside.is_dir() else aside.unlink()
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return out
