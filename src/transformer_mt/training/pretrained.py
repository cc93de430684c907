"""Starting a run from a pretrained model: `train.py model.init_from=<folder>`.

The folder is anything `transformer_mt.formats.load_model` reads as `model_dir` (a release
folder, or a Hugging Face Marian / OPUS-MT folder, imported on the fly). The run then takes
the pretrained model's architecture and weights, and the data module encodes the corpus with
the pretrained tokenizer (its pieces and ids are what the weights mean). Everything else is a
run like any other: schedules, checkpoints, averaging, exact resume (a resumed run loads the
start again, then Lightning restores its checkpoint over it).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from transformer_mt.formats import LoadedModel, load_model

log = logging.getLogger(__name__)

TRAINING_FIELDS = ("dropout", "attention_dropout")
"""Model fields that only change training: the run's config sets them, not the start's."""


def split_init_from(fields: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the model node's TransformerConfig fields, its ``init_from`` folder or None)."""
    fields = dict(fields)
    return fields, fields.pop("init_from", None)


def load_start(init_from: str | None) -> LoadedModel | None:
    """The pretrained model to start from, or None for a fresh run."""
    if init_from is None:
        return None
    start = load_model(model_dir=init_from)
    log.info("starting from %s (%s, %s)", init_from, start.info.direction,
             start.info.provenance.get("format", "release"))  # fmt: skip
    return start


def start_fields(start: LoadedModel, fields: dict[str, Any]) -> dict[str, Any]:
    """The pretrained architecture, with the run's dropout settings; the run's other model
    fields cannot apply to weights of a given shape, so differing ones are reported."""
    architecture = dataclasses.asdict(start.info.config)
    ignored = {
        k: v
        for k, v in fields.items()
        if k in architecture and k not in TRAINING_FIELDS and architecture[k] != v
    }
    if ignored:
        log.info("model.init_from: the pretrained architecture applies; ignored: %s", ignored)
    return {**architecture, **{k: fields[k] for k in TRAINING_FIELDS if k in fields}}
