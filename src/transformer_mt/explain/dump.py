"""Machine-readable dump of an `Explanation`: every named tensor in an `.npz`, and a JSON index.

The index lists the tensors in step order with shape, dtype, title and row/column labels, and
holds what the matrices alone do not say (config, LayerNorm eps, tokens, decoding choices), so a
notebook can redo every computation from the files alone:

    index = json.load(open("explain.json")); arrays = numpy.load("explain.npz")
    arrays[index["tensors"][0]["name"]]
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from transformer_mt.explain.trace import Explanation


def index_of(explanation: Explanation, npz_name: str) -> dict[str, Any]:
    """The JSON-serializable index of `explanation` whose arrays live in `npz_name`."""
    return {
        "arrays": npz_name,
        "text": explanation.text,
        "source_pieces": explanation.source_pieces,
        "target_pieces": explanation.target_pieces,
        "translation": explanation.translation,
        "search": explanation.search,
        "config": dataclasses.asdict(explanation.config),
        "layer_norm_eps": explanation.layer_norm_eps,
        "choices": [dataclasses.asdict(c) for c in explanation.choices],
        "heatmaps": [dataclasses.asdict(h) for h in explanation.heatmaps],
        "tensors": [
            {
                "name": s.name,
                "shape": list(s.tensor.shape),
                "dtype": str(s.tensor.dtype).removeprefix("torch."),
                "title": s.title,
                "rows": s.rows,
                "cols": s.cols,
            }
            for s in explanation.steps
        ],
    }


def write_atomically(path: Path, write: Any, binary: bool) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if binary else "utf-8"
        with os.fdopen(fd, "wb" if binary else "w", encoding=encoding) as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dump(explanation: Explanation, out_dir: str | Path, stem: str = "explain") -> Path:
    """Write `<stem>.npz` (one array per step name) and `<stem>.json` (the index) into
    `out_dir`; returns the index path."""
    out_dir = Path(out_dir)
    arrays = {s.name: s.tensor.numpy() for s in explanation.steps}
    if len(arrays) != len(explanation.steps):
        raise ValueError("step names must be unique to be dumped")
    npz, index = out_dir / f"{stem}.npz", out_dir / f"{stem}.json"
    write_atomically(npz, lambda f: np.savez_compressed(f, **arrays), binary=True)
    text = json.dumps(index_of(explanation, npz.name), indent=1, ensure_ascii=False)
    write_atomically(index, lambda f: f.write(text), binary=False)
    return index
