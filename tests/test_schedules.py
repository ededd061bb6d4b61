"""Learning-rate schedules by name."""

from __future__ import annotations

import pytest
import torch

from nerveseg.bundle.schedules import build_lr_scheduler


def _rates(name: str, num_epochs: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = build_lr_scheduler(optimizer, name, num_epochs=num_epochs, **kwargs)
    rates = []
    for _ in range(num_epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_cosine_reaches_zero_at_the_end():
    rates = _rates("cosine", 10)
    assert rates[0] == 1.0 and rates[5] == pytest.approx(0.5) and rates[-1] == pytest.approx(0.0245, abs=1e-3)


def test_step_multiplies_every_epoch():
    assert _rates("step", 4, step_gamma=0.5) == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_warmup_then_schedule():
    rates = _rates("constant", 6, warmup_epochs=3)
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    cosine = _rates("cosine", 6, warmup_epochs=2)
    assert cosine[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and cosine[3] < 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "linear"}, "lr_schedule 'linear' is unknown; choose one of cosine, step, constant"),
        ({"warmup_epochs": 10}, r"warmup_epochs \(10\) must be in \[0, num_epochs \(10\)\)"),
        ({"step_gamma": 0.0}, r"step_gamma must be in \(0, 1\]"),
    ],
)
def test_bad_settings_name_their_key(kwargs, message):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=message):
        build_lr_scheduler(optimizer, **{"num_epochs": 10, **kwargs})
