"""ProgressLog: a few whole lines per epoch with the loss and what is left, and the run's end after each epoch."""

from __future__ import annotations

import logging
import re

from ignite.engine import Engine

from nerveseg.bundle.handlers import ProgressLog


def test_lines_per_epoch_and_run_estimates(caplog):
    trainer = Engine(lambda engine, batch: {"loss": 0.5 / (batch + 1)})
    ProgressLog(lines_per_epoch=4, output_transform=lambda output: output["loss"], name="progress").attach(trainer)
    with caplog.at_level(logging.INFO, logger="progress"):
        trainer.run(list(range(8)), max_epochs=2)
    lines = [record.getMessage() for record in caplog.records if record.name == "progress"]
    assert len(lines) == 2 * (3 + 1)  # 3 lines inside each epoch, one at its end
    assert re.fullmatch(
        r"Epoch 1/2: 2/8 iterations, loss 0\.2500; 0:00 into the epoch, about 0:00 left in it", lines[0]
    )
    assert [line.split(":")[1].split(",")[0].strip() for line in lines[:3]] == ["2/8 iterations"] + [
        "4/8 iterations",
        "6/8 iterations",
    ]
    assert re.fullmatch(r"Epoch 1/2 done in 0:00; run 0:00 so far, about 0:00 left, ends about \d\d:\d\d", lines[3])
    assert re.fullmatch(r"Epoch 2/2 done in 0:00; run 0:00", lines[7])


def test_one_epoch_runs_say_what_they_are(caplog):
    evaluator = Engine(lambda engine, batch: None)
    ProgressLog(lines_per_epoch=2, desc="Inference", name="progress").attach(evaluator)
    with caplog.at_level(logging.INFO, logger="progress"):
        evaluator.run(list(range(4)), max_epochs=1)
    lines = [record.getMessage() for record in caplog.records if record.name == "progress"]
    assert lines[0].startswith("Inference: 2/4 iterations; ") and lines[1].startswith("Inference done in 0:00")
