"""Prepared arrays: equal to direct encoding, memory-mapped, worker-safe, never half-written."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from transformer_mt.data.batching import TokenBatchSampler
from transformer_mt.data.cache import MANIFEST, CacheError
from transformer_mt.data.corpus import TextPairSource
from transformer_mt.data.prepare import prepare_split
from transformer_mt.data.prepared import PreparedSplit
from transformer_mt.data.tokenizer import Tokenizer

from .conftest import write_lines


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1]


def test_arrays_hold_the_tokenizer_output(small_tokenizer: Tokenizer, slice_files, tmp_path):
    src, tgt = _lines(slice_files["val.de"]), _lines(slice_files["val.en"])
    src[10], tgt[20] = "", " "  # two pairs with an empty side
    source = TextPairSource(write_lines(tmp_path / "s", src), write_lines(tmp_path / "t", tgt))
    split = PreparedSplit(prepare_split(source, small_tokenizer, tmp_path / "prep"))
    kept = [i for i in range(len(src)) if i not in (10, 20)]
    assert split.meta["empty_dropped"] == 2 and len(split) == len(kept)
    a = split.arrays
    assert isinstance(a["src_tokens"], np.memmap) and a["src_tokens"].dtype == np.uint16
    assert a["line_numbers"].tolist() == [i + 1 for i in kept]
    expected_src = small_tokenizer.encode_src([src[i] for i in kept])
    expected_tgt = small_tokenizer.encode_tgt([tgt[i] for i in kept])
    for j in range(len(kept)):
        s0, s1, t0, t1 = a["src_offsets"][j : j + 2].tolist() + a["tgt_offsets"][j : j + 2].tolist()
        assert a["src_tokens"][s0:s1].tolist() == expected_src[j]
        assert a["tgt_tokens"][t0:t1].tolist() == expected_tgt[j]


def test_workers_share_the_files_and_see_the_same_batches(small_tokenizer, slice_files, tmp_path):
    source = TextPairSource(slice_files["val.de"], slice_files["val.en"])
    split = PreparedSplit(prepare_split(source, small_tokenizer, tmp_path / "prep"))
    assert split.arrays["src_tokens"].size  # opened here; must not travel to the workers
    assert len(pickle.dumps(split)) < 4096
    sampler = TokenBatchSampler(*split.lengths(), 300, shuffle=False)
    direct = [split[b] for b in sampler]
    loaded = list(DataLoader(split, sampler=sampler, batch_size=None, num_workers=2))
    assert len(loaded) == len(direct)
    for x, y in zip(direct, loaded, strict=True):
        assert x.src_ids.equal(y.src_ids) and x.tgt_out_ids.equal(y.tgt_out_ids)
        assert x.indices.equal(y.indices)


_PREPARE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from transformer_mt.data.corpus import TextPairSource
    from transformer_mt.data.prepare import prepare_split
    from transformer_mt.data.tokenizer import Tokenizer

    src, tgt, tok, out = map(Path, sys.argv[1:])
    prepare_split(TextPairSource(src, tgt), Tokenizer.load(tok), out)
    """
)


def test_interrupted_preparation_restarts_clean(small_tokenizer, slice_files, tmp_path: Path):
    """SIGKILL a preparing process mid-way; the next run rebuilds identical data."""
    src = write_lines(
        tmp_path / "big.de", _lines(slice_files["train.de"]) * 40
    )  # 80k pairs: two chunks
    tgt = write_lines(tmp_path / "big.en", _lines(slice_files["train.en"]) * 40)
    small_tokenizer.save(tok := tmp_path / "tok")
    final = tmp_path / "cache" / "prepared"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _PREPARE_SCRIPT, src, tgt, tok, final], env=env)
    try:
        partial = _wait_for_partial_output(final.parent, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert partial and not final.exists()  # killed before publishing
    again = PreparedSplit(prepare_split(TextPairSource(src, tgt), small_tokenizer, final))
    assert [p.name for p in final.parent.iterdir()] == ["prepared"]  # leftover removed
    reference = PreparedSplit(
        prepare_split(TextPairSource(src, tgt), small_tokenizer, tmp_path / "ref")
    )
    for name, array in reference.arrays.items():
        assert np.array_equal(again.arrays[name], array), name
    assert again.meta["pairs"] == 80_000


def _wait_for_partial_output(folder: Path, proc: subprocess.Popen) -> bool:
    """Wait until the preparing process has written some tokens into its temporary folder."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        written = [p for p in folder.glob("*prepared.tmp-*/src_tokens.bin") if p.stat().st_size]
        if written:
            return True
        time.sleep(0.01)
    pytest.fail(f"the preparing process ended (rc={proc.poll()}) before writing any tokens")


@pytest.mark.parametrize("manifest", [True, False])  # False: an entry from before manifests
def test_a_truncated_array_is_named_then_rebuilt(
    manifest: bool, synthetic_corpus, synthetic_tokenizer, tmp_path: Path, caplog
):
    """A truncated .bin used to fail deep in numpy ("mmap length is greater than file size")
    without a path; its size is now checked against meta.json when the entry is opened."""
    pairs = synthetic_corpus["train"][:300]
    src = write_lines(tmp_path / "a.xa", [s for s, _ in pairs])
    tgt = write_lines(tmp_path / "a.xb", [t for _, t in pairs])
    folder = prepare_split(TextPairSource(src, tgt), synthetic_tokenizer, tmp_path / "entry")
    reference = {n: np.array(a) for n, a in PreparedSplit(folder).arrays.items()}
    if not manifest:
        (folder / MANIFEST).unlink()
    size = (folder / "src_tokens.bin").stat().st_size
    os.truncate(folder / "src_tokens.bin", size // 2)
    with pytest.raises(
        CacheError,
        match=rf"prepared data {folder} is damaged \(src_tokens\.bin "
        rf"is {size // 2} bytes.*it will be rebuilt",
    ):
        PreparedSplit(folder)  # fmt: skip
    with caplog.at_level("WARNING"):
        rebuilt = PreparedSplit(
            prepare_split(TextPairSource(src, tgt), synthetic_tokenizer, folder)
        )
    assert f"cache entry {folder} is damaged" in caplog.text and "rebuilt" in caplog.text
    for name, array in reference.items():
        assert np.array_equal(rebuilt.arrays[name], array), name
