"""Learning-rate schedules: train.json's cosine and the override files of configs/training/, parsed as a run would.

Each stack is parsed from the real files with a one-parameter optimizer in place of the network's, stepped once
per epoch (as MONAI's ``LrScheduleHandler`` does), and its rates compared with the schedule's closed form.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import CONFIGS

LR = 0.001  # train.json's learning_rate


def _rates(overrides: list[str], num_epochs: int, steps: int | None = None, **values) -> list[float]:
    """The learning rate of each epoch of ``train.json`` + ``overrides``, as multiples of ``learning_rate``."""
    parser = _parser(overrides, num_epochs, **values)
    optimizer = parser.get_parsed_content("optimizer")
    schedule = parser.get_parsed_content("lr_scheduler")
    rates = []
    for _ in range(num_epochs if steps is None else steps):
        rates.append(optimizer.param_groups[0]["lr"] / LR)
        optimizer.step()
        schedule.step()
    return rates


def _parser(overrides: list[str], num_epochs: int, **values) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), *(str(CONFIGS / "training" / name) for name in overrides)])
    parser["optimizer#params"] = "$[torch.nn.Parameter(torch.zeros(1))]"
    parser["num_epochs"] = num_epochs
    for key, value in values.items():
        parser[key] = value
    assert parser.get_parsed_content("learning_rate") == LR
    return parser


def _cosine(epoch: int, length: int) -> float:
    return (1 + math.cos(math.pi * epoch / length)) / 2


@pytest.mark.parametrize("num_epochs", [10, 100])
def test_train_json_anneals_by_cosine_to_zero_at_the_last_epoch(num_epochs):
    rates = _rates([], num_epochs, steps=num_epochs + 1)
    assert rates == pytest.approx([_cosine(e, num_epochs) for e in range(num_epochs + 1)], abs=1e-12)
    assert rates[0] == 1.0 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    if num_epochs == 10:
        assert rates[5] == pytest.approx(0.5) and rates[9] == pytest.approx(0.0245, abs=1e-3)


def test_step_lr_multiplies_by_step_gamma_every_epoch():
    assert _rates(["step_lr.json"], 6) == pytest.approx([0.95**e for e in range(6)])
    assert _rates(["step_lr.json"], 4, step_gamma=0.5) == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_constant_lr_keeps_the_learning_rate():
    assert _rates(["constant_lr.json"], 5) == [1.0] * 5


@pytest.mark.parametrize("num_epochs, warmup_epochs", [(100, None), (6, 2), (2, None), (6, 3)])
def test_warmup_rises_linearly_then_anneals_by_cosine(num_epochs, warmup_epochs):
    values = {} if warmup_epochs is None else {"warmup_epochs": warmup_epochs}
    rates = _rates(["warmup.json"], num_epochs, **values)
    warmup = max(1, num_epochs // 20) if warmup_epochs is None else warmup_epochs
    expected = [(e + 1) / (warmup + 1) for e in range(warmup)]
    expected += [_cosine(e, num_epochs - warmup) for e in range(num_epochs - warmup)]
    assert rates == pytest.approx(expected, abs=1e-12)
    if (num_epochs, warmup_epochs) == (6, 2):
        assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and rates[3] < 1.0


def test_warmup_resumes_where_it_stopped():
    """``TrainingCheckpoints`` saves the schedule's state; a resumed run continues the same sequence."""
    parser = _parser(["warmup.json"], 10, warmup_epochs=3)
    optimizer, schedule = parser.get_parsed_content("optimizer"), parser.get_parsed_content("lr_scheduler")
    for _ in range(5):
        optimizer.step()
        schedule.step()
    saved = {"optimizer": optimizer.state_dict(), "lr_scheduler": schedule.state_dict()}
    resumed = _parser(["warmup.json"], 10, warmup_epochs=3)
    optimizer, schedule = resumed.get_parsed_content("optimizer"), resumed.get_parsed_content("lr_scheduler")
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["lr_scheduler"])
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"] / LR)
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx(_rates(["warmup.json"], 10, warmup_epochs=3)[5:], abs=1e-12)


def test_sgd_poly_is_nesterov_sgd_decaying_by_the_power_0_9_to_zero():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "training" / "sgd_poly.json")])
    parser["optimizer#params"] = "$[torch.nn.Parameter(torch.zeros(1))]"
    parser["num_epochs"] = 10
    optimizer, schedule = parser.get_parsed_content("optimizer"), parser.get_parsed_content("lr_scheduler")
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD) and (group["momentum"], group["nesterov"]) == (0.99, True)
    rates = []
    for _ in range(11):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.01 * (1 - e / 10) ** 0.9 for e in range(11)], abs=1e-12)


def test_every_schedule_override_is_tested_here():
    """A new schedule file in configs/training/ needs its own sequence test above."""
    schedules = {p.name for p in (CONFIGS / "training").glob("*.json") if "lr_scheduler" in json.loads(p.read_text())}
    assert schedules == {"step_lr.json", "constant_lr.json", "warmup.json", "sgd_poly.json"}
    for name in schedules - {"sgd_poly.json"}:  # which sets its own learning rate
        scheduler = _parser([name], 10).get_parsed_content("lr_scheduler")
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler), name
