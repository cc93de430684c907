"""The cache for SentencePiece models and prepared arrays: keys, location, atomic publication.

Entries are folders named by a hash of everything they depend on (corpus bytes and settings).
A folder is built under a temporary name and renamed into place when complete, so a reader
never sees half an entry and an interrupted build leaves only a temporary folder, which the
next build on the same host removes once its owner process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "TRANSFORMER_MT_CACHE"
_TMP_MARK = ".tmp-"
_hash_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (memoized per path, size and mtime within the process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def settings_key(**parts: object) -> str:
    """A short stable hash of JSON-serializable parts (file hashes, settings, format version)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _write_allowed(folder: Path) -> bool:
    """Permission bits grant writing and the OS agrees (root ignores the bits, we do not)."""
    write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return bool(folder.stat().st_mode & write_bits) and os.access(folder, os.W_OK)


def _writable(folder: Path) -> bool:
    """True if `folder` exists (or can be created) and accepts new files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def resolve_cache_dir(cache_dir: str | Path | None, data_root: Path | None) -> Path:
    """Where caches go: `cache_dir` if given, else $TRANSFORMER_MT_CACHE, else
    `<data_root>/.cache` when the data root is writable, else ~/.cache/transformer_mt.

    A read-only data root (a shared corpus folder) is never written to: it counts as writable
    only if its permission bits allow writing, even for root, who could bypass them.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if data_root is not None and data_root.is_dir() and _write_allowed(data_root):
        candidate = data_root / ".cache"
        if _writable(candidate):
            return candidate
    return Path.home() / ".cache" / "transformer_mt"


def _owner_gone(tmp: Path) -> bool:
    """True if a temporary folder was made on this host by a process that no longer runs."""
    try:
        host, pid = tmp.name.split(_TMP_MARK, 1)[1].rsplit("-", 2)[:2]
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return host == socket.gethostname()
    except (ValueError, PermissionError):
        return False
    return False


def remove_stale_temporaries(folder: Path) -> None:
    """Delete leftovers of interrupted builds in `folder` (only those whose process died)."""
    if not folder.is_dir():
        return
    for tmp in folder.glob(f"*{_TMP_MARK}*"):
        if tmp.is_dir() and _owner_gone(tmp):
            log.info("removing leftover of an interrupted build: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def build_atomically(final: Path, build: Callable[[Path], None]) -> Path:
    """Return `final`, calling `build(tmp_dir)` and renaming it into place if it is missing.

    If another process published `final` meanwhile, its copy wins and ours is discarded.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent)
    suffix = f"{_TMP_MARK}{socket.gethostname()}-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=final.name + suffix, dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
