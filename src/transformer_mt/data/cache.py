"""The cache for SentencePiece models and prepared arrays: keys, location, atomic publication.

Entries are folders named by a hash of everything they depend on (corpus bytes and settings).
A folder is built under a temporary name, its files fsynced, given the modes a plain ``mkdir``
and ``open`` would give (so a cache shared by a group is readable by it), and renamed into place
when complete: a reader never sees half an entry, and an interrupted build leaves only a
temporary folder, which the next build on the same host removes once its owner process is gone.
A lock file per entry makes concurrent builds of the same entry (two jobs of a sweep, two users
of a shared cache) build it once: the others wait, then reuse it. Each entry records its files'
sizes; an entry found damaged (a truncated file) is reported and rebuilt.

The cache never goes inside a data folder unless the user puts it there: corpora are often
shared and read-only. See `resolve_cache_dir` for where it goes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from transformer_mt.utils.io import (
    default_mode,
    fsync_dir,
    remove_stale_temporaries,
    temp_prefix,
)

log = logging.getLogger(__name__)

CACHE_ENV = "TRANSFORMER_MT_CACHE"
MANIFEST = ".manifest.json"
OVERRIDES = f"set paths.cache_dir=<dir> or the environment variable {CACHE_ENV}=<dir>"
_hash_memo: dict[tuple[str, int, int], str] = {}


class CacheError(RuntimeError):
    """The cache cannot be placed or written; the message names the places and the overrides."""


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


def _unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be this user's cache (None if it can), trying for real: permission
    bits are not the whole story (a read-only mount, root, ACLs)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    # a default place in a shared temporary directory could have been made by someone else
    return None if folder.stat().st_uid == os.getuid() else "owned by another user"


def default_cache_dirs() -> list[Path]:
    """The default places, in order: the XDG cache directory (``$XDG_CACHE_HOME``, else
    ``~/.cache``), then the system temporary directory (lost at reboot, but it works)."""
    places = []
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        places.append(Path(xdg) / "transformer_mt")
    else:
        with contextlib.suppress(RuntimeError):  # no HOME and no password entry
            places.append(Path.home() / ".cache" / "transformer_mt")
    places.append(Path(tempfile.gettempdir()) / f"transformer_mt-{os.getuid()}")
    return places


def resolve_cache_dir(cache_dir: str | Path | None, data_root: Path | None) -> Path:
    """Where caches go: `cache_dir` if given, else $TRANSFORMER_MT_CACHE, else the first
    writable of `default_cache_dirs`.

    A place the user chose is used as given (it may be a read-only cache someone else built);
    writing into it fails later with an error naming it. `data_root` is never written to; an
    old cache found there (``<data_root>/.cache``, where earlier versions put it) is pointed out.

    Raises:
        CacheError: no default place is writable, naming each one tried and why.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if data_root is not None and (data_root / ".cache").is_dir():
        log.info("an older cache is at %s; set paths.cache_dir=%s to reuse it",
                 data_root / ".cache", data_root / ".cache")  # fmt: skip
    tried = []
    for place in default_cache_dirs():
        problem = _unwritable(place)
        if problem is None:
            if tried:
                log.warning("cache: using %s (%s is not writable)", place, "; ".join(tried))
            return place
        tried.append(f"{place} ({problem})")
    raise CacheError(f"no writable cache directory; tried: {'; '.join(tried)}; {OVERRIDES}")


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST)


def _seal(folder: Path) -> None:
    """Record the files' sizes, fsync everything and give the modes a plain mkdir/open would."""
    sizes = {str(p.relative_to(folder)): p.stat().st_size for p in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"sizes": sizes}, indent=1))
    for path in folder.rglob("*"):
        path.chmod(default_mode("dir" if path.is_dir() else "file"))
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    folder.chmod(default_mode("dir"))
    fsync_dir(folder)


def damage(folder: Path) -> str | None:
    """What is wrong with a published entry according to its manifest (None: nothing found)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None  # an entry from before manifests: only its own checks apply
    try:
        sizes = json.loads(manifest.read_text())["sizes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {MANIFEST} ({err})"
    for name, size in sizes.items():
        path = folder / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual} bytes"
            return f"{name} is {found}, {size} bytes were written"
    return None


@contextlib.contextmanager
def _writing(final: Path) -> Iterator[None]:
    """Turn a failed write into the cache (read-only, full) into an error that says what to do."""
    try:
        yield
    except OSError as err:
        raise CacheError(
            f"cannot write the cache entry {final} ({err.strerror or err}); {OVERRIDES}"
        ) from err


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _entry_lock(final: Path) -> Iterator[None]:
    """Hold the entry's lock file; wait (saying so) while another process builds it.

    The holder deletes the lock file when done, so a waiter may wake up holding a file that is
    no longer there; it then locks the new one (the usual lock-file loop).
    """
    lock_path = final.parent / f".{final.name}.lock"
    while True:
        with _writing(final):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, default_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s (lock %s)", final, lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(fd, lock_path):
            break
        os.close(fd)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)  # closing releases the lock; the kernel releases it if we are killed


def _problem(final: Path, check: Callable[[Path], str | None] | None) -> str | None:
    return damage(final) or (check(final) if check is not None else None)


def build_atomically(
    final: Path, build: Callable[[Path], None], check: Callable[[Path], str | None] | None = None
) -> Path:
    """Return `final`, calling `build(tmp_dir)` and renaming it into place if it is missing or
    damaged (`damage`, and `check(final)` when given: what is wrong, or None).

    Raises:
        CacheError: the cache cannot be written (read-only, full), naming the entry and the
            overrides.
    """
    if final.is_dir() and _problem(final, check) is None:
        return final
    with _writing(final):
        final.parent.mkdir(parents=True, exist_ok=True)
    with _entry_lock(final):
        if final.is_dir():
            problem = _problem(final, check)
            if problem is None:
                return final  # built by the process we waited for
            log.warning("cache entry %s is damaged (%s): it will be rebuilt", final, problem)
            with _writing(final):
                _discard(final)
        return _build_locked(final, build)


def _build_locked(final: Path, build: Callable[[Path], None]) -> Path:
    remove_stale_temporaries(final.parent)
    with _writing(final):
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    try:
        build(tmp)
        with _writing(final):
            _seal(tmp)
            _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # else a process without the lock (an older version) won
            raise
    fsync_dir(final.parent)


def _discard(final: Path) -> None:
    """Move a damaged entry out of the way (a rename, so readers never see it half deleted)."""
    doomed = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    os.rename(final, doomed / final.name)
    shutil.rmtree(doomed, ignore_errors=True)
