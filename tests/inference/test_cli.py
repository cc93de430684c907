"""translate.py, export.py and explain.py as a user runs them: real subprocesses, arguments
exactly as a shell hands them over (no quotes left), stdin piped, stdout read back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transformer_mt.data.synthetic import synthetic_pairs
from transformer_mt.decoding import BeamSearch
from transformer_mt.formats import load_model
from transformer_mt.inference import TorchBackend, Translator

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / args[0]), *args[1:]], input=stdin, cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def reference(release: Path, lines: list[str], search=None) -> list[str]:
    """The same lines through the library, in-process."""
    loaded = load_model(model_dir=release)
    translator = Translator(loaded.tokenizer, TorchBackend(loaded.model, search or BeamSearch()))
    return [t.text for t in translator.translate(lines)]


@pytest.fixture(scope="module")
def lines(synthetic_corpus):
    return [s for s, _ in synthetic_corpus["val"][:12]]


def test_stdin_to_stdout_in_input_order_with_logs_on_stderr(tiny_release, lines, tmp_path):
    text = "\n".join([lines[0], "", *lines[1:]]) + "\n"
    result = run("translate.py", f"model_dir={tiny_release}", "max_tokens=60", stdin=text,
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 2  # one line per input line
    expected = reference(tiny_release, lines)
    assert out[:-1] == [expected[0], "", *expected[1:]]
    assert "lines translated" in result.stderr
    assert not list(tmp_path.iterdir())  # no run directory, no log file in the cwd


@pytest.mark.parametrize(
    "text",
    ["我喜欢小狗", "我喜欢小狗。", "A dog, a cat", "it's ${oc.env:HOME} \\", "x=y [1,2] {a: b}"],
)
def test_text_argument_arrives_intact(tiny_release, text):
    result = run("translate.py", f"model_dir={tiny_release}", f"text={text}", "scores=true")
    assert result.returncode == 0, result.stderr[-3000:]
    line, rank, _, translation = result.stdout.rstrip("\n").split("\t")
    assert (line, rank) == ("0", "1")
    assert translation == reference(tiny_release, [text])[0]


def test_nbest_rows_and_seeded_sampling(tiny_release, lines):
    result = run("translate.py", f"model_dir={tiny_release}", "decoding.nbest=3",
                 stdin="\n".join(lines[:4]) + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r.split("\t") for r in result.stdout.splitlines()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, k) for i in range(4) for k in (1, 2, 3)]
    best = reference(tiny_release, lines[:4], BeamSearch(nbest=3))
    assert [r[3] for r in rows if r[1] == "1"] == best
    sample = ["decoding=sample", "decoding.seed=3", "decoding.nbest=2", "decoding.top_p=0.9"]
    first = run("translate.py", f"model_dir={tiny_release}", *sample, stdin="\n".join(lines))
    again = run("translate.py", f"model_dir={tiny_release}", *sample, "max_tokens=50",
                stdin="\n".join(lines))  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == again.stdout and first.stdout.count("\n") == 2 * len(lines)


def test_files_in_and_out_and_bad_input(tiny_release, lines, tmp_path):
    source = tmp_path / "src.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "hyp.txt"
    result = run("translate.py", f"model_dir={tiny_release}", f"input={source}", f"output={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text(encoding="utf-8").splitlines() == reference(tiny_release, lines)
    assert result.stdout == ""
    missing = run("translate.py", f"model_dir={tiny_release}", f"input={tmp_path / 'nope.txt'}")
    assert missing.returncode != 0 and "nope.txt: no such file" in missing.stderr
    source.write_bytes(b"ok\n\xff\xfe\n")
    bad = run("translate.py", f"model_dir={tiny_release}", f"input={source}", f"output={out}")
    assert bad.returncode != 0 and "src.txt:2: invalid UTF-8" in bad.stderr
    assert out.read_text(encoding="utf-8").splitlines() == reference(tiny_release, lines)  # kept


def test_export_from_a_checkpoint_translates_bit_identically(
    trained_tiny, synthetic_tokenizer, lines, tmp_path
):
    """A checkpoint laid out as the training module saves it; export.py makes a release; both
    translate the same lines to the same hypotheses with the same scores."""
    model = trained_tiny()
    fields = {k: getattr(model.config, k) for k in model.config.__dataclass_fields__}
    checkpoint = {
        "hyper_parameters": {"transformer": fields, "src_lang": "xa", "tgt_lang": "xb"},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "tokenizer": synthetic_tokenizer.to_state(),
        "global_step": 300,
    }
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000300.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(checkpoint, ckpt)
    release = tmp_path / "models" / "xa-xb"
    result = run("export.py", f"ckpt_path={ckpt}", f"out={release}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    card = (release / "README.md").read_text(encoding="utf-8")
    assert "# xa-xb" in card and "xa → xb" in card and "update 300" in card
    source = tmp_path / "src.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [f"input={source}", "scores=true", "decoding.nbest=2"]
    from_ckpt = run("translate.py", f"ckpt_path={ckpt}", *args)
    from_release = run("translate.py", f"model_dir={release}", *args)
    assert from_ckpt.returncode == 0, from_ckpt.stderr[-3000:]
    assert from_release.stdout == from_ckpt.stdout and from_ckpt.stdout.count("\n") == 24
    again = run("export.py", f"ckpt_path={ckpt}", f"out={release}", cwd=tmp_path)
    assert again.returncode != 0 and "exists and is not empty" in again.stderr

    # scored with evaluate.py, exported again with the scores: the card quotes them with their
    # signatures, and config.json keeps the decoding they were measured with
    reference = tmp_path / "ref.txt"
    reference.write_text("\n".join(t for _, t in synthetic_pairs(12, 1)) + "\n", encoding="utf-8")
    scored = run("evaluate.py", f"model_dir={release}", f"input={source}",
                 f"reference={reference}", f"output_dir={tmp_path / 'eval'}",
                 "decoding.beam_size=3", cwd=tmp_path)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text(encoding="utf-8"))
    result = run("export.py", f"ckpt_path={ckpt}", f"out={release}", "force=true",
                 f"scores=[{tmp_path / 'eval' / 'scores.json'}]", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    card = (release / "README.md").read_text(encoding="utf-8")
    assert f"{scores['bleu']:.2f}" in card and scores["bleu_signature"] in card
    assert json.loads((release / "config.json").read_text())["decoding"]["beam_size"] == 3


def test_explain_takes_chinese_text_as_typed(tmp_path):
    result = run("explain.py", "text=我喜欢小狗", "print=false", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    index = json.loads((tmp_path / "explain.json").read_text(encoding="utf-8"))
    assert index["text"] == "我喜欢小狗"
