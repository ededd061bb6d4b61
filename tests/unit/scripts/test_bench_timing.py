"""The benchmarks' step timer on a bare Ignite engine: data wait, the trainer's step, bare loops, warm-up, stop."""

from __future__ import annotations

import time

import pytest
import torch
from ignite.engine import Engine

from nerveseg.scripts.bench.results import mean_sd, sample_sd
from nerveseg.scripts.bench.timing import StepTimer


def _batches(count: int):
    for _ in range(count):
        time.sleep(0.002)  # the data wait
        yield {"image": torch.zeros(3, 1, 4, 4), "label": torch.zeros(3, 1, 4, 4)}


def test_step_timer_times_after_warmup_runs_each_loop_and_stops_the_trainer():
    trainer = Engine(lambda engine, batch: time.sleep(0.001))
    loop_calls = []
    timer = StepTimer(warmup=1, measured=3)
    timer.attach(trainer, {"bare": (lambda images, labels: loop_calls.append(images.is_contiguous()), False)})
    trainer.run(_batches(10), max_epochs=1, epoch_length=10)
    assert trainer.state.iteration == 4 and len(loop_calls) == 4  # stopped after 1 + 3 steps
    assert {name: len(s) for name, s in timer.seconds.items()} == {"data": 3, "trainer": 3, "step": 3, "bare": 3}
    assert timer.images == [3, 3, 3]
    seconds = timer.seconds
    for data, trainer_s, step in zip(seconds["data"], seconds["trainer"], seconds["step"], strict=True):
        assert data >= 0.002 and trainer_s >= 0.001 and step == pytest.approx(data + trainer_s)  # the sleeps


def test_one_sd_convention():
    assert sample_sd([0.5]) is None and sample_sd([]) is None
    assert sample_sd([1.0, 3.0]) == 2**0.5
    assert mean_sd([0.5]) == "0.5000 ± n/a" and mean_sd([1.0, 3.0]) == "2.0000 ± 1.4142"
