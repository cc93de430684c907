"""Reliability figures: kills during checkpoint saves, crafted pickles through every entry point,
and what a user sees for each bad input tried (issue #16 and the data issue before it).

    python -m benchmarks.reliability [--data-root DIR] [--trials 40] [--baseline DIR]

- Kill trials: a real Multi30k checkpoint (model=tiny, 8k vocabulary, 2 updates: tens of MB)
  saved back to back by a forked child that is SIGKILLed at a random moment
  (tests/reliability/kill_during_save.py), through Lightning's own CheckpointIO and through
  ours, with TMPDIR on tmpfs (/dev/shm, another filesystem) and on the run's filesystem.
- Crafted pickles: a checkpoint whose unpickling creates a file, given to train.py (resume),
  evaluate.py, translate.py, export.py and explain.py with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1;
  with ``--baseline DIR`` (a checkout of the code before, e.g. ``git archive HEAD``) the same
  attempts are made against it.
- Bad inputs: each run in this process through the entry points' ``main`` on a synthetic
  corpus; recorded is what the user is told (the error, or the warning and what happened).

Results go to benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
KILL_SCRIPT = ROOT / "tests" / "reliability" / "kill_during_save.py"
ENTRY_POINTS = ("train.py", "evaluate.py", "translate.py", "export.py", "explain.py")
TINY = [
    "model=tiny", "model.d_model=32", "model.d_ff=64", "model.num_heads=2",
    "model.num_encoder_layers=1", "model.num_decoder_layers=1", "scheduler=inverse_sqrt",
    "scheduler.lr_lambda.warmup_steps=2", "decoding.max_len_a=0.5", "decoding.max_len_b=2",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.num_sanity_val_steps=0",
    "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false", "test=false",
]  # fmt: skip


def compose(name: str, overrides: list[str]) -> Any:
    """Compose conf/<name>.yaml as Hydra would for a run (HydraConfig set)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def entry(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- kill trials --------------------------------------------------------------------------


def real_checkpoint(data_root: Path, tmp: Path) -> Path:
    """last.ckpt of a 2-update Multi30k en-de run of model=tiny with an 8k vocabulary."""
    out = tmp / "multi30k_run"
    overrides = [
        "experiment=multi30k_tiny", "data.tokenizer.vocab_size=8000", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "test=false",
        "trainer.num_sanity_val_steps=0", "callbacks.rich_progress_bar=null",
        "data.num_workers=0", f"paths.data_dir={data_root}", f"paths.cache_dir={tmp / 'cache'}",
        f"paths.output_dir={out}", "data.corpus.download=false",
    ]  # fmt: skip
    entry("train").train(compose("train", overrides))
    return out / "checkpoints" / "last.ckpt"


def kill_trials(checkpoint: Path, tmp: Path, trials: int) -> list[dict[str, Any]]:
    """Each CheckpointIO with TMPDIR on tmpfs and on the run directory's own filesystem."""
    settings = [("lightning", "/dev/shm"), ("atomic", "/dev/shm"),
                ("lightning", str(tmp / "tmp")), ("atomic", str(tmp / "tmp"))]  # fmt: skip
    (tmp / "tmp").mkdir(exist_ok=True)
    reports = []
    for io_name, tmpdir in settings:
        folder = tmp / f"kill_{io_name}_{Path(tmpdir).name}"
        folder.mkdir()
        result = subprocess.run(
            [sys.executable, str(KILL_SCRIPT), str(checkpoint), str(folder), "--trials",
             str(trials), "--io", io_name, "--seed", "16"],
            env={**os.environ, "TMPDIR": tmpdir, "OMP_NUM_THREADS": "1"},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        reports.append(_summarize(json.loads(result.stdout)))
    return reports


def _summarize(report: dict[str, Any]) -> dict[str, Any]:
    broken = [r for r in report.pop("results") if not r["loads"]]
    report["broken"] = len(broken)
    report["broken_sizes_bytes"] = [r["size_bytes"] for r in broken]
    report["errors"] = sorted({r["error"].split(": ", 2)[-1][:120] for r in broken})
    return report


# ---- crafted pickles ----------------------------------------------------------------------


class Payload:
    """Unpickled, this opens (creates) `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _commands(ckpt: Path, tmp: Path) -> dict[str, list[str]]:
    source = tmp / "source.txt"
    source.write_text("a dog sees the cat.\n")
    return {
        # a corpus that exists, so that code which prepares the data first reaches the load
        "train.py": [*_corpus(tmp, "corpus"), *TINY, f"ckpt_path={ckpt}",
                     f"hydra.run.dir={tmp / 'train'}", f"paths.cache_dir={tmp / 'cache'}"],
        "evaluate.py": [f"ckpt_path={ckpt}", f"input={source}", f"hydra.run.dir={tmp / 'ev'}"],
        "translate.py": [f"ckpt_path={ckpt}", "text=a dog sees the cat."],
        "export.py": [f"ckpt_path={ckpt}", f"out={tmp / 'out'}", f"hydra.run.dir={tmp / 'ex'}"],
        "explain.py": [f"ckpt_path={ckpt}", f"hydra.run.dir={tmp / 'xp'}"],
    }  # fmt: skip


def pickle_attempts(code: Path, tmp: Path) -> list[dict[str, Any]]:
    """Each entry point of the checkout at `code` on a crafted checkpoint, one at a time."""
    import torch

    results = []
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(code / "src")}  # fmt: skip
    env.pop("HYDRA_FULL_ERROR", None)
    for name in ENTRY_POINTS:
        folder = tmp / name.removesuffix(".py")
        folder.mkdir(parents=True)
        marker = folder / "PAYLOAD_RAN"
        ckpt = folder / "last.ckpt"
        torch.save(
            {
                "state_dict": {"model.w": torch.zeros(2)},
                "tokenizer": {},
                "hyper_parameters": Payload(marker),
                "global_step": 1,
                "epoch": 0,
            },
            ckpt,
        )
        args = [sys.executable, str(code / name), *_commands(ckpt, folder)[name]]
        run = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
        results.append(
            {
                "entry_point": name,
                "exit_status": run.returncode,
                "payload_ran": marker.exists(),
                "user_sees": _gist(run.stderr),
            }
        )
    return results


def _gist(stderr: str) -> str:
    """The line that says what went wrong (the last error-looking line of stderr)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith("error:") or "Error" in line[:60]]
    line = (wanted or lines or [""])[-1]
    return line[:400]


# ---- bad inputs ---------------------------------------------------------------------------


class Records(logging.Handler):
    """Collects WARNING and INFO lines worth showing from the package and the entry points."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING or "nothing left to train" in text:
            self.lines.append(f"{record.levelname}: {text}")


def _sees(run: Callable[[], Any], keep: tuple[str, ...] = ()) -> str:
    """What the user is told: the one-line error, else the warnings that contain one of `keep`
    and the outcome."""
    records = Records()
    logging.getLogger().addHandler(records)
    try:
        run()
        outcome = "exit 0"
    except SystemExit as stop:
        return str(stop)[:600]
    finally:
        logging.getLogger().removeHandler(records)
    shown = [line for line in records.lines if any(k in line for k in keep)]
    return " | ".join([*shown[:2], outcome])


def _corpus(tmp: Path, name: str, edit: Callable[[dict[str, Path]], None] | None = None) -> list:
    """Overrides for a custom corpus of synthetic pairs in `tmp/name`, edited by `edit`."""
    from transformer_mt.data.synthetic import synthetic_pairs

    folder = tmp / name
    folder.mkdir(parents=True)
    files = {}
    for split, pairs in (("train", synthetic_pairs(300, 0)), ("val", synthetic_pairs(20, 1))):
        for side, i in (("src", 0), ("tgt", 1)):
            files[f"{split}_{side}"] = folder / f"{split}.{side}"
            files[f"{split}_{side}"].write_text("".join(p[i] + "\n" for p in pairs))
    if edit:
        edit(files)
    corpus = [f"data.corpus.{k}={v}" for k, v in files.items()]
    return ["data=custom", *corpus, "data.tokenizer.vocab_size=100", "data.max_tokens=600",
            "data.num_workers=0"]  # fmt: skip


def _train(
    tmp: Path, name: str, *overrides: str, edit: Callable | None = None, corpus: bool = True
) -> Callable:
    """train.py's main on a synthetic corpus named `name`, edited by `edit` (or, without
    `corpus`, on the data the overrides choose)."""
    data = _corpus(tmp, name, edit) if corpus else []
    cfg = compose("train", [*data, *TINY, f"paths.data_dir={tmp / 'data'}",
                            f"paths.cache_dir={tmp / 'cache'}",
                            f"paths.output_dir={tmp / 'runs' / name}", *overrides])  # fmt: skip
    main = entry("train").main
    return lambda: main(cfg)


def _evaluate(tmp: Path, *overrides: str) -> Callable:
    cfg = compose("evaluate", [f"paths.output_dir={tmp / 'eval'}", *overrides])
    main = entry("evaluate").main
    return lambda: main(cfg)


def _write(key: str, data: bytes) -> Callable[[dict[str, Path]], None]:
    return lambda files: files[key].write_bytes(data)


def _cut(files: dict[str, Path]) -> None:
    files["train_tgt"].write_text("".join(files["train_tgt"].read_text().splitlines(True)[:-7]))


def data_cases(tmp: Path) -> dict[str, Callable]:
    """The data issue's inputs, and this issue's corpus ones."""
    return {
        "mismatched line counts": _train(tmp, "lines", edit=_cut),
        "invalid UTF-8 in a corpus file": _train(
            tmp, "utf8", edit=_write("val_src", b"ok\n\xff\n")
        ),
        "a NUL byte in a corpus file": _train(tmp, "nul", edit=_write("train_src", b"a\x00b\n")),
        "\\r-only line endings": _train(tmp, "cr", edit=_write("train_tgt", b"a\rb\rc\r")),
        "a missing corpus file": _train(tmp, "missing", "data.corpus.train_src=/nope/train.xa"),
        "TSV row with too few columns": _train(
            tmp,
            "tsv",
            "data=tatoeba_zh_en",
            f"data.corpus.train={_tsv(tmp)}",
            f"data.corpus.val={_tsv(tmp)}",
            "data.tokenizer.vocab_size=40",
            "data.tokenizer.tgt_vocab_size=40",
            "data.num_workers=0",
            corpus=False,
        ),  # fmt: skip
        "Multi30k absent, download off": _train(
            tmp,
            "nodata",
            "data=multi30k_en_de",
            f"paths.data_dir={tmp / 'empty'}",
            "data.corpus.download=false",
            corpus=False,
        ),  # fmt: skip
        "data.max_len filters every pair": _train(tmp, "maxlen", "data.max_len=3"),
        "every val line has an empty side": _train(
            tmp, "emptyval", edit=_write("val_tgt", b"\n" * 20)
        ),
    }


def _tsv(tmp: Path) -> Path:
    path = tmp / "short.tsv"
    path.write_text("a dog\t一只狗\tx\nthe cat\n")
    return path


def setting_cases(tmp: Path, good: Path) -> dict[str, Callable]:
    return {
        "data.max_tokens=-5": _train(tmp, "neg_tokens", "data.max_tokens=-5"),
        "data.max_len=-1": _train(tmp, "neg_len", "data.max_len=-1"),
        "validation turned off (limit_val_batches=0)": _train(
            tmp, "noval", "trainer.limit_val_batches=0"
        ),
        "val_check_interval beyond max_steps": _train(tmp, "late", "trainer.val_check_interval=50"),
        "a finished run resumed": _train(
            tmp, "finished", f"ckpt_path={good}", "trainer.max_steps=2"
        ),
        "train.py ckpt_path= missing file": _train(tmp, "noresume", f"ckpt_path={tmp}/no.ckpt"),
        "evaluate.py without ckpt_path and input": _evaluate(tmp),
        "evaluate.py without input": _evaluate(tmp, f"ckpt_path={good}"),
    }


def checkpoint_cases(tmp: Path, good: Path) -> dict[str, Callable]:
    """Damaged checkpoints given to evaluate.py (train.py resume says the same)."""
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    import test_integrity as damage  # the same damage the tests apply

    source = tmp / "source.txt"
    source.write_text("a dog sees the cat.\n")
    cases = {}
    for kind, (make, _) in sorted(damage.DAMAGE.items()):
        bad = make(good, tmp / f"{kind}.ckpt")
        cases[f"checkpoint: {kind.replace('_', ' ')}"] = _evaluate(
            tmp, f"ckpt_path={bad}", f"input={source}"
        )
    return cases


def cache_cases(tmp: Path, good_files: list[str]) -> dict[str, Callable]:
    return {
        "HOME not writable, no cache override": lambda: _unwritable_home(tmp, good_files),
        "a writable (0755) shared data root": lambda: _shared_root(tmp, good_files),
        "a truncated prepared .bin": lambda: _truncated_bin(tmp, good_files),
    }


KEEP = ("nothing left to train", "cache at", "damaged", "rebuilt", "not writable")


def _unwritable_home(tmp: Path, overrides: list[str]) -> None:
    (tmp / "home-file").write_text("")
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_CACHE_HOME", "TRANSFORMER_MT_CACHE")}
    os.environ["HOME"] = str(tmp / "home-file")
    for key in ("XDG_CACHE_HOME", "TRANSFORMER_MT_CACHE"):
        os.environ.pop(key, None)
    tempfile.tempdir = str(tmp / "home-file")  # the last fallback unwritable too
    try:
        cfg = compose("train", [*overrides, *TINY, f"paths.output_dir={tmp / 'runs/home'}"])
        entry("train").main(cfg)
    finally:
        tempfile.tempdir = None
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _shared_root(tmp: Path, overrides: list[str]) -> None:
    from hydra.utils import instantiate

    root = tmp / "shared-root"
    root.mkdir(mode=0o755)
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg")
    try:
        cfg = compose("train", [*overrides, f"data.data_root={root}", "paths.cache_dir=null",
                                f"paths.output_dir={tmp / 'runs/shared'}"])  # fmt: skip
        module = instantiate(cfg.data)
        module.setup("fit")
    finally:
        os.environ.pop("XDG_CACHE_HOME")
    logging.getLogger("benchmark").warning(
        "cache at %s; data root holds: %s", module.cache_dir, sorted(os.listdir(root)) or "nothing"
    )


def _truncated_bin(tmp: Path, overrides: list[str]) -> None:
    from hydra.utils import instantiate

    cfg = compose("train", [*overrides, f"paths.cache_dir={tmp / 'cache-bin'}",
                            f"paths.output_dir={tmp / 'runs/bin'}"])  # fmt: skip
    first = instantiate(cfg.data)
    first.setup("fit")
    folder = first.splits["train"].folder
    os.truncate(folder / "src_tokens.bin", 10)
    again = instantiate(cfg.data)
    again.setup("fit")
    logging.getLogger("benchmark").warning("rebuilt: %d pairs", len(again.splits["train"]))


def bad_inputs(tmp: Path, good: Path) -> list[dict[str, str]]:
    good_files = [*_corpus(tmp, "good"), f"paths.data_dir={tmp / 'data'}"]
    cases = {**data_cases(tmp), **setting_cases(tmp, good), **checkpoint_cases(tmp, good)}
    cases |= cache_cases(tmp, good_files)
    return [{"input": name, "user_sees": _sees(run, KEEP)} for name, run in cases.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--trials", type=int, default=40, help="kills per setting")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger().handlers[0].setLevel(logging.WARNING)  # Records sees INFO, not stderr
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tmt_reliability_") as tmp:
        tmp = Path(tmp)
        checkpoint = real_checkpoint(args.data_root, tmp)
        report = {
            "machine": machine_info(),
            "checkpoint_bytes": checkpoint.stat().st_size,
            "kill_trials": kill_trials(checkpoint, tmp, args.trials),
            "pickle_attempts": {"now": pickle_attempts(ROOT, tmp / "pickles")},
            "bad_inputs": bad_inputs(tmp / "bad", checkpoint),
        }
        if args.baseline:
            report["pickle_attempts"]["baseline"] = pickle_attempts(args.baseline, tmp / "base")
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
