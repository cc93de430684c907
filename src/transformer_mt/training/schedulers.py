"""Learning-rate schedules as LambdaLR multipliers, stepped once per optimizer update.

Each schedule is a small callable dataclass: ``LambdaLR`` calls it with ``step``, the number of
updates already taken (0 before the first), and multiplies the optimizer's ``lr`` by the
result. The formulas use ``step_num = step + 1``, the 1-based number of the update about to be
taken, so the first update never runs at a learning rate of zero. (fairseq's inverse_sqrt lets
its first update run at ``warmup_init_lr``; here every schedule is shifted by that one update.)
Being dataclasses, their fields go into ``LambdaLR.state_dict()`` and resume exactly.
"""

import math
from dataclasses import dataclass


@dataclass
class NoamSchedule:
    """The paper's rate (§5.3): d_model^-0.5 * min(step_num^-0.5, step_num * warmup^-1.5).

    This is the absolute learning rate: pair it with ``optimizer.lr = 1.0`` (the paper), or use
    ``lr`` as a scale factor on it.
    """

    d_model: int
    warmup_steps: int = 4000

    def __post_init__(self) -> None:
        _check_positive(d_model=self.d_model, warmup_steps=self.warmup_steps)

    def __call__(self, step: int) -> float:
        step_num = step + 1
        return self.d_model**-0.5 * min(step_num**-0.5, step_num * self.warmup_steps**-1.5)


@dataclass
class InverseSqrtSchedule:
    """fairseq's inverse_sqrt: linear warmup from ``warmup_init_ratio * lr`` to ``lr``, then
    ``lr * sqrt(warmup_steps / step_num)``."""

    warmup_steps: int = 4000
    warmup_init_ratio: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(warmup_steps=self.warmup_steps)
        _check_ratio(warmup_init_ratio=self.warmup_init_ratio)

    def __call__(self, step: int) -> float:
        step_num = step + 1
        if step_num < self.warmup_steps:
            slope = (1.0 - self.warmup_init_ratio) / self.warmup_steps
            return self.warmup_init_ratio + step_num * slope
        return math.sqrt(self.warmup_steps / step_num)


@dataclass
class CosineSchedule:
    """Linear warmup to ``lr`` over ``warmup_steps``, then half a cosine down to
    ``min_ratio * lr`` at ``total_steps`` (held there afterwards)."""

    total_steps: int
    warmup_steps: int = 4000
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(total_steps=self.total_steps, warmup_steps=self.warmup_steps)
        _check_ratio(min_ratio=self.min_ratio)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"cosine schedule: warmup_steps ({self.warmup_steps}) must be smaller than "
                f"total_steps ({self.total_steps}); set trainer.max_steps or scheduler warmup"
            )

    def __call__(self, step: int) -> float:
        step_num = step + 1
        if step_num < self.warmup_steps:
            return step_num / self.warmup_steps
        progress = min(1.0, (step_num - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_ratio(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
