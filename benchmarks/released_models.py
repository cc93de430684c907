"""Re-score the shipped models from their release folders (not from the training runs), so the
figures in their model cards can be checked by anyone with the repository and the corpora.

For every `models/<name>/` the direction in its config.json picks the evaluation split
(Multi30k val for en<->de, the Tatoeba dev split for zh->en); the model is loaded from the
folder, decoded with the decoding its card's scores were measured with (config.json
`decoding`, beam 5 when absent), and scored as `evaluate.py` scores (cased and lowercased
BLEU, chrF, TER, with signatures).

    PYTHONPATH=src python -m benchmarks.released_models [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.machine import machine_info
from transformer_mt.formats import load_model
from transformer_mt.inference import TorchBackend, Translator
from transformer_mt.inference.scoring import score
from transformer_mt.utils.io import read_lines

BEAM5 = {"_target_": "transformer_mt.decoding.BeamSearch", "beam_size": 5}


def evaluation_split(root: Path, src: str, tgt: str) -> tuple[str, list[str], list[str]]:
    """(name, sources, references) of the split a direction's figures are reported on."""
    if {src, tgt} <= {"en", "de", "fr"}:
        folder = root / "multi30k"
        return (
            "Multi30k val",
            read_lines(folder / f"val.{src}.gz"),
            read_lines(folder / f"val.{tgt}.gz"),
        )
    if (src, tgt) in (("zh", "en"), ("en", "zh")):
        rows = [line.split("\t") for line in read_lines(root / "tatoeba-cmn-eng" / "dev.tsv")]
        english, chinese = [r[0] for r in rows], [r[1] for r in rows]
        return (
            ("Tatoeba dev", chinese, english) if src == "zh" else ("Tatoeba dev", english, chinese)
        )
    raise ValueError(f"no evaluation split known for {src}->{tgt}")


def rescore(folder: Path, root: Path) -> dict:
    loaded = load_model(model_dir=folder)
    info = loaded.info
    decoding = {k: v for k, v in (info.decoding or BEAM5).items() if k != "_partial_"}
    search = instantiate(OmegaConf.create(decoding))
    split, sources, references = evaluation_split(root, info.src_lang, info.tgt_lang)
    start = time.perf_counter()
    translator = Translator(loaded.tokenizer, TorchBackend(loaded.model, search))
    hypotheses = [t.text for t in translator.translate(sources)]
    seconds = time.perf_counter() - start
    scores = score(hypotheses, references, info.bleu_tokenize)
    return {"split": split, "sentences": len(sources), "decoding": decoding,
            "translate_seconds": seconds, **scores}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/released_models.json"))
    args = parser.parse_args()
    folders = sorted(p for p in args.models.iterdir() if (p / "config.json").is_file())
    results = {}
    for folder in folders:
        results[folder.name] = rescore(folder, args.data_root)
        print(folder.name, {k: results[folder.name][k] for k in ("bleu", "bleu_lc", "chrf")})
    report = {"benchmark": "released_models", "machine": machine_info(), "results": results}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
