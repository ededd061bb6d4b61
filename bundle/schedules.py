"""Learning-rate schedules chosen by name from the config, with an optional linear warm-up."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

__all__ = ["LR_SCHEDULES", "build_lr_scheduler"]

LR_SCHEDULES = ("cosine", "step", "constant")


def build_lr_scheduler(
    optimizer: Optimizer,
    name: str = "cosine",
    num_epochs: int = 100,
    warmup_epochs: int = 0,
    step_gamma: float = 0.95,
) -> LRScheduler:
    """An epoch-level schedule (stepped once per epoch by MONAI's ``LrScheduleHandler``).

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        name: ``cosine`` (annealing to 0 at the last epoch, the nerve seed's), ``step`` (multiply by ``step_gamma``
            every epoch) or ``constant``. Config key ``lr_schedule``.
        num_epochs: length of training; the cosine reaches 0 there.
        warmup_epochs: epochs of linear warm-up from ``lr / (warmup_epochs + 1)`` before the schedule starts.
        step_gamma: the per-epoch factor of ``step``.
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule {name!r} is unknown; choose one of {', '.join(LR_SCHEDULES)}.")
    if not 0 <= warmup_epochs < num_epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be in [0, num_epochs ({num_epochs})).")
    if not 0.0 < step_gamma <= 1.0:
        raise ValueError(f"step_gamma must be in (0, 1], got {step_gamma}.")
    remaining = num_epochs - warmup_epochs
    if name == "cosine":
        schedule: LRScheduler = CosineAnnealingLR(optimizer, T_max=remaining)
    elif name == "step":
        schedule = StepLR(optimizer, step_size=1, gamma=step_gamma)
    else:
        schedule = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup_epochs == 0:
        return schedule
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs)
    return SequentialLR(optimizer, schedulers=[warmup, schedule], milestones=[warmup_epochs])
