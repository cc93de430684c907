"""The three views (terminal, dump, HTML), the CJK font, and that explaining leaves the model
as it was."""

import base64
import importlib.util
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from rich.console import Console

from transformer_mt.decoding import GreedySearch
from transformer_mt.explain import explain, font_for, render, report_html, write_dump, write_html
from transformer_mt.explain.steps import ATTENTION_KINDS

from .conftest import SHORT_GREEDY, TEXT, perturbed_tiny

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def explained():
    """Two layers, two heads: the HTML must hold 2 x 2 maps of each kind."""
    model, tokenizer = perturbed_tiny("alibi", norm_first=True, layers=2)
    return explain(model, tokenizer, TEXT, search=SHORT_GREEDY)


def test_html_has_one_heatmap_per_head_per_layer_per_kind(explained, tmp_path):
    path = write_html(explained, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    figures = re.findall(
        r'<figure class="heatmap" data-kind="([^"]+)" data-layer="(\d+)" data-head="(\d+)">'
        r'<img src="data:image/png;base64,([^"]+)"',
        page,
    )
    for kind in ATTENTION_KINDS:
        found = sorted((int(layer), int(head)) for k, layer, head, _ in figures if k == kind)
        assert found == [(0, 0), (0, 1), (1, 0), (1, 1)], kind
    assert len(figures) == 12
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for *_, data in figures)
    assert "http" not in page.replace('"http://www.w3.org', "")  # self-contained: nothing fetched
    assert TEXT in page


def test_tokens_render_with_a_font_that_has_their_glyphs():
    """The font matplotlib is given covers every character (checked in the file's own cmap by
    fontTools), and drawing the tokens raises no missing-glyph warning."""
    from fontTools.ttLib import TTFont

    font = font_for([TEXT])
    if font.missing:
        pytest.skip(f"no CJK font on this machine for {font.missing!r}: apt-get install "
                    "fonts-wqy-microhei")  # fmt: skip
    cmap = TTFont(font.path, fontNumber=0).getBestCmap()
    assert all(ord(c) in cmap for c in TEXT)
    from transformer_mt.explain.html import heatmap_png

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font.*")
        png = heatmap_png(torch.rand(5, 5), list(TEXT), list(TEXT), TEXT, font.families)
    assert png.startswith(b"\x89PNG")


def test_html_warns_when_no_font_has_the_glyphs(monkeypatch):
    import transformer_mt.explain.html as html

    model, tokenizer = perturbed_tiny(layers=1)
    explained = explain(model, tokenizer, TEXT, search=GreedySearch(max_len_b=1))

    monkeypatch.setattr(
        html, "font_for", lambda texts: html.FontChoice(("DejaVu Sans",), None, "我")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's own missing-glyph warnings
        assert "fonts-wqy-microhei" in report_html(explained)


def test_dump_index_lists_every_array_in_step_order(explained, tmp_path):
    index_path = write_dump(explained, tmp_path)
    index = json.loads(index_path.read_text(encoding="utf-8"))
    arrays = np.load(tmp_path / index["arrays"])
    assert [t["name"] for t in index["tensors"]] == [s.name for s in explained.steps]
    assert sorted(arrays.files) == sorted(t["name"] for t in index["tensors"])
    for entry in index["tensors"]:
        assert list(arrays[entry["name"]].shape) == entry["shape"]
    assert index["source_pieces"] == explained.source_pieces
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explain.json", "explain.npz"]


def test_terminal_view_filters_and_elides(explained):
    console = Console(record=True, width=200)
    render(explained, console, step="encoder.1.self_attn.head0")
    text = console.export_text()
    shown = set(re.findall(r"^(encoder\.\S+|decoder\.\S+)  ", text, flags=re.M))
    assert shown and all(n.startswith("encoder.1.self_attn.head0.") for n in shown)
    assert "encoder.1.self_attn.head0.scores" in shown

    console = Console(record=True, width=200)
    render(explained, console, step="decoder.step0.logits", max_rows=4)
    text = console.export_text()
    assert "…" in text and f"({explained.config.tgt_vocab_size})" in text

    with pytest.raises(ValueError, match="matches no step.*encoder"):
        render(explained, Console(record=True), step="encoder.9")


def test_explaining_does_not_change_the_model():
    model, tokenizer = perturbed_tiny("relative", layers=1)
    model.train()  # a caller's mode is restored afterwards
    src = torch.tensor([tokenizer.encode_src([TEXT])[0]])
    tgt = torch.tensor([[2, 4, 5, 6]])
    with torch.no_grad():
        before = model.eval()(src, tgt)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    explained = explain(model, tokenizer, TEXT, search=SHORT_GREEDY)
    assert model.training
    model.eval()
    assert all(not m._forward_hooks for m in model.modules())
    assert all(getattr(m, "trace_sink", None) is None for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(src, tgt), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    last = explained.steps[[s.name for s in explained.steps].index("decoder.step0.logits")]
    with torch.no_grad():
        torch.testing.assert_close(last.tensor, model(src, tgt[:, :1])[0, -1])


def test_entry_point_writes_the_three_outputs(tmp_path, capsys):
    """explain.py's main on its composed config (beam, rope, pre-norm, a step filter)."""
    overrides = ["pos_enc=rope", "model.norm_first=true", "step=encoder.0.self_attn.head1.probs",
                 "decoding=beam", "decoding.beam_size=2", "decoding.max_len_a=0",
                 "decoding.max_len_b=3", f"output_dir={tmp_path}"]  # fmt: skip
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("explain", overrides=overrides)
    spec = importlib.util.spec_from_file_location("explain_entry", ROOT / "explain.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    entry.main(cfg)
    out = capsys.readouterr().out
    assert "encoder.0.self_attn.head1.probs" in out
    assert "encoder.0.self_attn.head0" not in out
    assert {"explain.html", "explain.json", "explain.npz"} <= {p.name for p in tmp_path.iterdir()}
    index = json.loads((tmp_path / "explain.json").read_text(encoding="utf-8"))
    assert index["search"] == "beam" and index["config"]["pos_enc"] == "rope"
    assert index["config"]["d_model"] == 4 and index["source_pieces"][:5] == list(TEXT)
