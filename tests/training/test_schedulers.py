"""Schedules against their formulas, and driven through torch's LambdaLR as in training."""

import math

import pytest
import torch

from transformer_mt.training.schedulers import CosineSchedule, InverseSqrtSchedule, NoamSchedule


@pytest.mark.parametrize("step_num", [1, 2, 100, 3999, 4000, 4001, 10_000, 100_000])
def test_noam_is_the_papers_formula(step_num: int) -> None:
    d_model, warmup = 512, 4000
    want = d_model**-0.5 * min(step_num**-0.5, step_num * warmup**-1.5)
    assert NoamSchedule(d_model, warmup)(step_num - 1) == pytest.approx(want, rel=1e-12)


def test_noam_peaks_at_warmup() -> None:
    schedule = NoamSchedule(512, 4000)
    rates = [schedule(s) for s in range(8000)]
    assert max(range(8000), key=rates.__getitem__) == 4000 - 1  # step_num == warmup
    assert rates[3999] == pytest.approx(512**-0.5 * 4000**-0.5)


@pytest.mark.parametrize("step_num", [1, 500, 999, 1000, 1001, 4000, 250_000])
def test_inverse_sqrt_is_fairseqs_formula(step_num: int) -> None:
    lr, init, warmup = 5e-4, 1e-7, 1000
    if step_num < warmup:
        want = init + step_num * (lr - init) / warmup
    else:
        want = lr * warmup**0.5 * step_num**-0.5
    schedule = InverseSqrtSchedule(warmup_steps=warmup, warmup_init_ratio=init / lr)
    assert lr * schedule(step_num - 1) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("step_num", [1, 50, 100, 101, 550, 1000, 1200])
def test_cosine_is_the_formula(step_num: int) -> None:
    total, warmup, floor = 1000, 100, 0.1
    if step_num < warmup:
        want = step_num / warmup
    else:
        progress = min(1.0, (step_num - warmup) / (total - warmup))
        want = floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2
    assert CosineSchedule(total, warmup, floor)(step_num - 1) == pytest.approx(want, rel=1e-12)


def test_lambda_lr_steps_and_resumes() -> None:
    """Update k runs at schedule(k - 1); a scheduler rebuilt from state_dict continues exactly."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    schedule = NoamSchedule(d_model=64, warmup_steps=10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(k) for k in range(5)])

    opt2 = torch.optim.Adam([param], lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, NoamSchedule(d_model=1, warmup_steps=1))
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert sched2.lr_lambdas[0] == schedule  # the dataclass fields travel in the state dict
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(schedule(6))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: NoamSchedule(d_model=0), "d_model"),
        (lambda: InverseSqrtSchedule(warmup_steps=-1), "warmup_steps"),
        (lambda: CosineSchedule(total_steps=100, warmup_steps=100), "smaller than"),
        (lambda: CosineSchedule(total_steps=-1), "total_steps"),
        (lambda: CosineSchedule(total_steps=10, warmup_steps=1, min_ratio=2.0), "min_ratio"),
    ],
)
def test_bad_settings_are_named(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()
