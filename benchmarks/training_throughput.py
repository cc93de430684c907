"""Training throughput against Hugging Face Marian, a profile of our step, and the matmul peak.

    PYTHONPATH=src python -m benchmarks.training_throughput [--rounds 8] [--threads 2]

A full training step = forward + label-smoothed loss (epsilon 0.1, summed over non-pad target
tokens, divided by their count) + backward + fused Adam step (betas (0.9, 0.98), eps 1e-9),
dropout on. Ours runs as `TranslationModule` trains it, projecting only the non-pad target
positions to the vocabulary; Marian projects every position, as HF models do. Both models
have the same dimensions (d_model 256, 3+3 layers, 4 heads, d_ff 1024, shared tied 8,000-token
vocabulary, dropout 0.1 incl. inside the feed-forward) and, round after round,
train on the same real batch: Multi30k de-en train, joint unigram SentencePiece, length-bucketed
batches of at most 4,096 padded tokens, exactly as `train.py` gets them. HF receives the same
ids with our pad id mapped to its own and an attention mask; both losses are the same function.

Rounds are interleaved (each round steps both models once, the order alternating) so a change
in the shared machine's load hits both alike; figures are medians over rounds. Then:
torch.profiler over a few of our steps (self CPU time, grouped), and the machine's fp32 matmul
peak (a large square `torch.mm`, same thread count) against the step's analytic matmul FLOPs.
Results go to benchmarks/results/training_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from benchmarks.machine import machine_info
from benchmarks.model_speed import (
    D_FF,
    D_MODEL,
    HEADS,
    LAYERS,
    VOCAB,
    build_marian,
    build_ours,
    round_ratios,
)
from transformer_mt.constants import PAD_ID
from transformer_mt.data.batching import Batch
from transformer_mt.data.corpus import Multi30k
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.data.tokenizer import TokenizerConfig
from transformer_mt.training.loss import label_smoothed_nll_loss, teacher_forced_loss

ROOT = Path(__file__).resolve().parents[1]
LABEL_SMOOTHING = 0.1
# fused: the kernel conf/optimizer/adam.yaml selects (torch >= 2.4 has it on CPU); both alike
ADAM = {"lr": 5e-4, "betas": (0.9, 0.98), "eps": 1e-9, "fused": True}
# Profile groups: an op's self time goes to the first group matched by the op or, failing
# that, by its nearest enclosing op (so bernoulli_ inside native_dropout counts as dropout).
GROUPS = {
    "optimizer": ("optimizer.step", "adam"),
    "dropout": ("dropout", "bernoulli"),
    "layernorm": ("layer_norm", "layernorm"),
    "attention": ("scaled_dot_product", "attention"),
    "softmax_log_softmax_loss": ("softmax", "nll", "gather", "cross_entropy", "crossentropy"),
    "matmul_linear": ("aten::mm", "addmm", "bmm", "matmul", "linear", "mmbackward"),
}
MATMUL_FLOPS_FORMULA = (
    "forward = sum over every linear and attention matmul of 2*m*n*k on the padded shapes "
    "(N_s = B*S, N_t = B*T): encoder layer 4*2*N_s*d^2 (Q,K,V,O) + 2*2*N_s*d*d_ff + "
    "2*2*B*S^2*d (QK^T, AV); decoder layer 4*2*N_t*d^2 + 4*B*T^2*d (self, full square: the "
    "causal half is not skipped in the count) + 2*2*N_t*d^2 + 2*2*N_s*d^2 (cross Q,O and K,V) "
    "+ 4*B*T*S*d + 2*2*N_t*d*d_ff; output projection 2*R*d*V with R = B*T for HF and the "
    "non-pad target count for ours (it projects only those). Step = 3 * forward "
    "(backward = 2x forward: grad w.r.t. input and weight)."
)


def load_batches(data_root: Path, cache_dir: Path, count: int) -> list[Batch]:
    """The first `count` training batches of Multi30k de-en, as `train.py` would see them."""
    dm = TranslationDataModule(
        corpus=Multi30k(data_root, "de", "en", test_sets=None, download=False),
        tokenizer=TokenizerConfig(model_type="unigram", vocab_size=VOCAB, joint=True),
        cache_dir=cache_dir,
        max_tokens=4096,
        num_workers=0,
        seed=1,
    )
    dm.setup("fit")
    assert dm.tokenizer is not None and dm.tokenizer.tgt_vocab_size == VOCAB
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == count:
            return batches
    return batches


def loss_per_token(logits: Tensor, batch: Batch) -> Tensor:
    """The label-smoothed loss per non-pad target token, on (B, T, V) logits (HF's step)."""
    loss_sum, _ = label_smoothed_nll_loss(logits, batch.tgt_out_ids, LABEL_SMOOTHING, PAD_ID)
    return loss_sum / batch.num_tgt_tokens


def ours_loss(model: torch.nn.Module) -> Callable[[Batch], Tensor]:
    """The loss exactly as `TranslationModule` computes it (`teacher_forced_loss`)."""

    def loss(batch: Batch) -> Tensor:
        loss_sum, _ = teacher_forced_loss(
            model, batch.src_ids, batch.tgt_in_ids, batch.tgt_out_ids, LABEL_SMOOTHING, PAD_ID
        )
        return loss_sum / batch.num_tgt_tokens

    return loss


def make_step(
    loss_of: Callable[[Batch], Tensor], model: torch.nn.Module
) -> Callable[[Batch], float]:
    """One full training step on a batch; returns the loss (a float, so the step is finished)."""
    optimizer = torch.optim.Adam(model.parameters(), **ADAM)

    def step(batch: Batch) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(batch)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def marian_loss(marian) -> Callable[[Batch], Tensor]:
    """Marian on our ids: pads become Marian's pad id, the source gets an attention mask.

    In the decoder, pads only follow a sentence's real tokens, so the causal mask already
    keeps them out of every real position (as in ours); their logits are ignored by the loss.
    """
    pad = marian.config.pad_token_id

    def loss(batch: Batch) -> Tensor:
        src_mask = batch.src_ids.ne(PAD_ID)
        logits = marian(
            input_ids=batch.src_ids.masked_fill(~src_mask, pad),
            attention_mask=src_mask.long(),
            decoder_input_ids=batch.tgt_in_ids.masked_fill(batch.tgt_in_ids.eq(PAD_ID), pad),
        ).logits
        return loss_per_token(logits, batch)  # (B, T, V): HF projects the padding too

    return loss


def interleaved_rounds(
    steps: dict[str, Callable[[Batch], float]], batches: list[Batch], warmup: int
) -> dict[str, list[float]]:
    """Seconds per step of each system; round r gives every system batch r, order alternating."""
    names = list(steps)
    for batch in batches[:warmup]:
        for name in names:
            steps[name](batch)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r, batch in enumerate(batches[warmup:]):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            steps[name](batch)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def throughput(seconds: dict[str, list[float]], batches: list[Batch]) -> dict:
    tokens = [b.num_tgt_tokens for b in batches]
    out: dict = {}
    for name, times in seconds.items():
        per_round = [n / t for n, t in zip(tokens, times, strict=True)]
        out[name] = {
            "median_target_tokens_per_s": statistics.median(per_round),
            "total_target_tokens_per_s": sum(tokens) / sum(times),
            "median_seconds_per_step": statistics.median(times),
            "per_round_target_tokens_per_s": [round(x, 1) for x in per_round],
        }
    ours, hf = out["transformer_mt"], out["hf_marian"]
    # both systems step the same batch in a round, so the tokens/s ratio is the seconds ratio
    per_round = round_ratios(seconds, "transformer_mt", "hf_marian")
    out["ratio_ours_vs_hf"] = {
        "of_medians": ours["median_target_tokens_per_s"] / hf["median_target_tokens_per_s"],
        "median_of_per_round_ratios": per_round["median"],
        "min_per_round_ratio": per_round["min"],
        "of_totals": ours["total_target_tokens_per_s"] / hf["total_target_tokens_per_s"],
    }
    return out


def step_matmul_flops(batch: Batch, output_rows: int | None = None) -> int:
    """Analytic matmul FLOPs of one training step on `batch` (see MATMUL_FLOPS_FORMULA);
    output_rows: positions projected to the vocabulary (default all B*T; ours: non-pad)."""
    (b, s), t = batch.src_ids.shape, batch.tgt_in_ids.shape[1]
    d, ns, nt = D_MODEL, b * s, b * t
    encoder = 4 * 2 * ns * d * d + 2 * 2 * ns * d * D_FF + 2 * 2 * b * s * s * d
    decoder = (
        4 * 2 * nt * d * d
        + 4 * b * t * t * d
        + 2 * 2 * nt * d * d
        + 2 * 2 * ns * d * d
        + 4 * b * t * s * d
        + 2 * 2 * nt * d * D_FF
    )
    rows = nt if output_rows is None else output_rows
    forward = LAYERS * (encoder + decoder) + 2 * rows * d * VOCAB
    return 3 * forward


def matmul_peak(size: int, repeats: int) -> dict:
    """Median GFLOP/s of a square fp32 `torch.mm` at the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3
    return {
        "size": size,
        "median_gflop_per_s": flops / statistics.median(times) / 1e9,
        "best_gflop_per_s": flops / min(times) / 1e9,
        "repeats": repeats,
    }


def group_of(event) -> str:
    """The profile group of a profiler event: its own name first, then its enclosing ops."""
    node = event
    while node is not None:
        name = node.name.lower()
        for group, keys in GROUPS.items():
            if any(k in name for k in keys):
                return group
        node = node.cpu_parent
    return "other"


def profile_steps(step: Callable[[Batch], float], batches: list[Batch]) -> dict:
    """Self CPU time of our training step by group and by (op, group), over `batches`."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for batch in batches:
            step(batch)
    groups: dict[str, float] = {}
    ops: dict[tuple[str, str], list[float]] = {}
    for event in prof.events():
        group = group_of(event)
        groups[group] = groups.get(group, 0.0) + event.self_cpu_time_total
        entry = ops.setdefault((event.name, group), [0.0, 0])
        entry[0], entry[1] = entry[0] + event.self_cpu_time_total, entry[1] + 1
    total = sum(groups.values())
    top = sorted(ops.items(), key=lambda item: -item[1][0])[:15]
    return {
        "steps": len(batches),
        "self_cpu_ms_per_step": total / 1e3 / len(batches),
        "groups_share": {
            g: round(us / total, 4) for g, us in sorted(groups.items(), key=lambda x: -x[1])
        },
        "top_ops_self_cpu": [
            {"op": op, "group": group, "share": round(us / total, 4), "calls": calls}
            for (op, group), (us, calls) in top
        ],
        "profiler_counted_matmul_flops_per_step": sum(e.flops for e in prof.key_averages())
        // len(batches),
    }


def measure(args: argparse.Namespace) -> dict:
    batches = load_batches(args.data_root, args.cache_dir, args.warmup + args.rounds + 2)
    torch.manual_seed(0)
    ours, marian = build_ours().train(), build_marian().train()
    steps = {
        "transformer_mt": make_step(ours_loss(ours), ours),
        "hf_marian": make_step(marian_loss(marian), marian),
    }
    timed = batches[: args.warmup + args.rounds]
    seconds = interleaved_rounds(steps, timed, args.warmup)
    results = throughput(seconds, timed[args.warmup :])
    peak = matmul_peak(args.mm_size, args.mm_repeats)
    flops = [step_matmul_flops(b, b.num_tgt_tokens) for b in timed[args.warmup :]]
    hf_flops = [step_matmul_flops(b) for b in timed[args.warmup :]]
    achieved = [
        f / t / 1e9 for f, t in zip(flops, seconds["transformer_mt"], strict=True)
    ]  # GFLOP/s per round
    results["matmul"] = {
        "fp32_peak_torch_mm": peak,
        "formula": MATMUL_FLOPS_FORMULA,
        "ours_median_step_gflop": statistics.median(flops) / 1e9,
        "ours_median_achieved_gflop_per_s": statistics.median(achieved),
        "ours_share_of_peak": statistics.median(achieved) / peak["median_gflop_per_s"],
        "hf_median_step_gflop": statistics.median(hf_flops) / 1e9,
        "hf_median_achieved_gflop_per_s": statistics.median(
            f / t / 1e9 for f, t in zip(hf_flops, seconds["hf_marian"], strict=True)
        ),
    }
    results["profile_ours"] = profile_steps(steps["transformer_mt"], batches[-2:])
    results["profile_ours"]["analytic_matmul_flops_per_step"] = (
        sum(step_matmul_flops(b, b.num_tgt_tokens) for b in batches[-2:]) // 2
    )  # beside the profiler's own count of the same steps, a check on the formula
    results["profile_hf_groups"] = profile_steps(steps["hf_marian"], batches[-2:])["groups_share"]
    results["batches"] = [
        {"shape_src": list(b.src_ids.shape), "shape_tgt": list(b.tgt_in_ids.shape),
         "target_tokens": b.num_tgt_tokens}
        for b in timed[args.warmup :]
    ]  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds (one batch each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads, both systems")
    parser.add_argument("--mm-size", type=int, default=2048)
    parser.add_argument("--mm-repeats", type=int, default=7)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/tmt_training_throughput"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/training_throughput.json"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = measure(args)
    load_after = os.getloadavg()
    report = {
        "benchmark": "training_throughput",
        "settings": {
            "rounds": args.rounds,
            "warmup_rounds": args.warmup,
            "threads": args.threads,
            "data": "Multi30k de-en train, joint unigram SentencePiece 8000, "
            "length-bucketed batches, max_tokens 4096 (padded, larger side), seed 1",
            "step": "forward + label-smoothed loss (0.1, per non-pad target token) + backward "
            "+ fused Adam step; ours projects only the non-pad target positions to the vocabulary, "
            "HF all of them; train mode, dropout 0.1 (Marian: dropout 0.1, activation_dropout 0.1, "
            "attention_dropout 0.0; ours: dropout 0.1, attention_dropout 0.0)",
            "adam": {**ADAM, "betas": list(ADAM["betas"])},
            "model": {
                "d_model": D_MODEL,
                "d_ff": D_FF,
                "num_heads": HEADS,
                "layers": f"{LAYERS}+{LAYERS}",
                "vocab": VOCAB,
                "embeddings": "shared source/target, tied output",
            },
            "statistic": "median over interleaved rounds (order alternating); each round "
            "steps both systems on the same batch",
            "load_average_1_5_15min": {"before": load_before, "after": load_after},
        },  # fmt: skip
        "machine": machine_info(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    tp = results
    print(
        f"target tokens/s (median): ours {tp['transformer_mt']['median_target_tokens_per_s']:.0f}"
        f"  HF {tp['hf_marian']['median_target_tokens_per_s']:.0f}"
        f"  ratio {tp['ratio_ours_vs_hf']['of_medians']:.2f}x"
        f"  | matmul peak {tp['matmul']['fp32_peak_torch_mm']['median_gflop_per_s']:.0f} GFLOP/s,"
        f" ours reaches {tp['matmul']['ours_share_of_peak']:.0%}"
    )
    print("profile (ours):", json.dumps(tp["profile_ours"]["groups_share"]))


if __name__ == "__main__":
    main()
