"""Two processes preparing the same corpus at once (two jobs of a sweep, two users of a shared
cache): SentencePiece is trained once, the other process waits and reuses the result."""

from __future__ import annotations

import time
from pathlib import Path

from .conftest import run_python

PREPARE = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from transformer_mt.data.corpus import TextCorpus
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.data.tokenizer import TokenizerConfig
src, tgt, val_src, val_tgt, cache, ready, go = sys.argv[1:]
module = TranslationDataModule(TextCorpus(src, tgt, val_src, val_tgt),
                               TokenizerConfig(vocab_size=100), cache_dir=cache, num_workers=0)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.002)
module.prepare_data()
print(module.tokenizer.fingerprint(), module.splits["train"].folder, module.splits["val"].folder)
"""


def test_sentencepiece_is_trained_once_for_two_processes(synthetic_files, tmp_path) -> None:
    files = [str(synthetic_files[k]) for k in ("train_src", "train_tgt", "val_src", "val_tgt")]
    cache, go = tmp_path / "cache", tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    processes = [
        run_python("-c", PREPARE, *files, str(cache), str(flag), str(go)) for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both have imported everything: they start preparing together
    outputs = [p.communicate(timeout=300) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-2000:] for _, err in outputs]
    logs = "".join(err for _, err in outputs)
    assert logs.count("training SentencePiece") == 1, logs
    results = {out.strip() for out, _ in outputs}
    assert len(results) == 1  # the same vocabulary and the same prepared folders
    folders = sorted(p.name for p in (cache / "tokenizers").iterdir())
    assert len(folders) == 1 and not folders[0].startswith(".")  # one entry, no leftovers
    assert Path(results.pop().split()[1]).is_dir()
