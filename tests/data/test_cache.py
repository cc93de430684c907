"""The cache: never inside a data folder by default, a fallback chain whose error names every
place and both overrides, group-readable fsynced entries, damaged entries rebuilt, and
atomic publication."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from transformer_mt.data import cache


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (cache.CACHE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_writable_data_root_is_not_the_default_cache(tmp_path: Path, no_overrides) -> None:
    """A shared corpus folder (writable or not: a root-owned 0755 one passes permission-bit
    checks) gets nothing written into it; the XDG cache directory is the default."""
    root = tmp_path / "corpora"
    root.mkdir()
    no_overrides.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.resolve_cache_dir(None, root) == tmp_path / "xdg" / "transformer_mt"
    no_overrides.delenv("XDG_CACHE_HOME")
    no_overrides.setenv("HOME", str(tmp_path / "home"))
    assert cache.resolve_cache_dir(None, root) == tmp_path / "home/.cache/transformer_mt"
    assert list(root.iterdir()) == []


def test_overrides_win_in_order(tmp_path: Path, no_overrides) -> None:
    no_overrides.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.resolve_cache_dir(None, tmp_path) == tmp_path / "env"
    assert cache.resolve_cache_dir(tmp_path / "given", tmp_path) == tmp_path / "given"


def test_an_unwritable_home_falls_back_and_then_names_every_place(tmp_path, no_overrides):
    """HOME is a plain file here (a read-only HOME behaves alike, and this works as root)."""
    (tmp_path / "home").write_text("not a folder")
    no_overrides.setenv("HOME", str(tmp_path / "home"))
    no_overrides.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert cache.resolve_cache_dir(None, None) == tmp_path / "tmp" / f"transformer_mt-{os.getuid()}"
    (tmp_path / "tmp").rename(tmp_path / "gone")
    (tmp_path / "tmp").write_text("not a folder either")
    with pytest.raises(cache.CacheError) as error:
        cache.resolve_cache_dir(None, None)
    message = str(error.value)
    assert f"{tmp_path}/home/.cache/transformer_mt (Not a directory)" in message
    assert f"{tmp_path}/tmp/transformer_mt-{os.getuid()} (Not a directory)" in message
    assert "paths.cache_dir=<dir>" in message and "TRANSFORMER_MT_CACHE=<dir>" in message


def test_a_cache_that_cannot_be_written_says_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(cache.CacheError, match=r"cannot write the cache entry .*paths\.cache_dir"):
        cache.build_atomically(tmp_path / "file" / "entry", lambda f: None)


def test_failed_build_publishes_nothing(tmp_path: Path) -> None:
    def build(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build_atomically(tmp_path / "entry", build)
    assert list(tmp_path.iterdir()) == []  # no temporary folder, no lock file
    done = cache.build_atomically(tmp_path / "entry", lambda f: (f / "ok").write_text("1"))
    assert (done / "ok").read_text() == "1"


def test_entries_are_group_readable_and_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))  # fmt: skip
    monkeypatch.setattr(
        os, "rename", lambda a, b: synced.append(f"rename {b}") or real_rename(a, b)
    )
    umask = os.umask(0o002)  # a group-shared cache
    try:
        entry = cache.build_atomically(tmp_path / "entry", _two_files)
    finally:
        os.umask(umask)
    assert entry.stat().st_mode & 0o777 == 0o775
    assert (entry / "sub").stat().st_mode & 0o777 == 0o775
    for name in ("a.bin", "sub/b.bin"):
        assert (entry / name).stat().st_mode & 0o777 == 0o664, name
    rename = synced.index(f"rename {entry}")
    before = [Path(p).name for p in synced[:rename]]
    assert {"a.bin", "b.bin", cache.MANIFEST} <= set(before)
    assert synced[rename + 1 :] == [str(tmp_path)]  # the parent, so the rename is durable


def _two_files(folder: Path) -> None:
    (folder / "a.bin").write_bytes(b"a" * 100)
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(b"b" * 10)


def test_a_damaged_entry_is_reported_and_rebuilt(tmp_path: Path, caplog) -> None:
    entry = cache.build_atomically(tmp_path / "entry", _two_files)
    with open(entry / "a.bin", "r+b") as f:
        f.truncate(40)
    builds = []
    with caplog.at_level(logging.WARNING):
        cache.build_atomically(entry, lambda f: builds.append(1) or _two_files(f))
    assert builds == [1] and (entry / "a.bin").stat().st_size == 100
    assert f"cache entry {entry} is damaged (a.bin is 40 bytes, 100 bytes were written)" in (
        caplog.text
    )
    assert "it will be rebuilt" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # nothing left aside
