"""The checkpoint and TensorBoard handlers on toy engines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from torch.utils.tensorboard import SummaryWriter

from nerveseg.bundle.handlers import LearningRateLogger, TrainingCheckpoints, ValidationPanel
from nerveseg.bundle.handlers.tensorboard import overlay, tile_grid


def _trainer(network: torch.nn.Module, epochs_to_best: set[int]) -> tuple[Engine, SimpleNamespace]:
    """A toy trainer that nudges the weights every iteration, and a validator state that improves on given epochs."""
    validator = SimpleNamespace(state=SimpleNamespace(best_metric=-1.0, best_metric_epoch=-1))

    def step(engine, batch):
        with torch.no_grad():
            network.weight.add_(torch.randn_like(network.weight))

    trainer = Engine(step)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        if engine.state.epoch in epochs_to_best:
            validator.state.best_metric = float(engine.state.epoch)
            validator.state.best_metric_epoch = engine.state.epoch

    return trainer, validator


def test_best_and_last_checkpoints(tmp_path):
    network = torch.nn.Linear(2, 1)
    trainer, validator = _trainer(network, {1, 2})
    TrainingCheckpoints(tmp_path, network, validator=validator).attach(trainer)
    saved = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: saved.setdefault(e.state.epoch, network.weight.clone()))
    trainer.run([0, 1], max_epochs=3)
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.testing.assert_close(best["weight"], saved[2])  # epoch 3 did not improve
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert last["trainer"]["iteration"] == 6 and last["best_metric"] == {"value": 2.0, "epoch": 2}
    torch.testing.assert_close(last["network"]["weight"], saved[3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "model.pt"]


def test_resume_continues_exactly(tmp_path):
    transforms = Compose([RandFlipd("image", prob=0.5), RandGaussianNoised("image", prob=1.0)])

    def run(max_epochs: int, folder, resume: bool = False) -> torch.Tensor:
        torch.manual_seed(0)
        np.random.seed(0)
        transforms.set_random_state(0)
        network = torch.nn.Linear(2, 1)
        trainer, validator = _trainer(network, set())

        @trainer.on(Events.ITERATION_COMPLETED)
        def augment(engine):  # consume the transforms' generators like a data loader would
            transforms({"image": torch.zeros(1, 4, 4)})

        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        handler = TrainingCheckpoints(folder, network, validator, {"optimizer": optimizer}, transforms, resume=resume)
        handler.attach(trainer)
        trainer.run([0, 1, 2], max_epochs=max_epochs)
        return network.weight.detach().clone()

    uninterrupted = run(5, tmp_path / "a")
    run(2, tmp_path / "b")  # stopped after epoch 2
    resumed = run(5, tmp_path / "b", resume=True)
    torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)


class _Interrupted(Exception):
    """Stands for a kill: raised after the iteration's handlers, checkpoints included, have run."""


def _shuffled_training(folder, max_epochs: int, interval: int, resume: bool = False, stop_at: int = 0):
    """Shuffled, augmented batches (a real ``DataLoader``) through a network whose step draws torch randomness."""
    from monai.data import DataLoader, Dataset

    torch.manual_seed(0)
    np.random.seed(0)
    transforms = Compose([RandFlipd("image", prob=0.5, spatial_axis=0), RandGaussianNoised("image", prob=1.0)])
    transforms.set_random_state(0)
    images = [{"image": torch.arange(4.0).reshape(1, 4) + i} for i in range(10)]
    loader = DataLoader(Dataset(images, transforms), batch_size=2, shuffle=True, num_workers=0)
    network = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)

    def step(engine, batch):
        optimizer.zero_grad()
        noise = torch.randn(1)  # as dropout would
        loss = (network(batch["image"].as_tensor().reshape(-1, 4)) * (1 + 0.1 * noise)).pow(2).mean()
        loss.backward()
        optimizer.step()

    trainer = Engine(step)
    handler = TrainingCheckpoints(
        folder, network, None, {"optimizer": optimizer}, transforms, resume, interval=interval
    )
    handler.attach(trainer)
    if stop_at:
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=stop_at), lambda e: (_ for _ in ()).throw(_Interrupted)
        )
    trainer.run(loader, max_epochs=max_epochs)
    return network.weight.detach().clone()


def test_resume_inside_an_epoch_continues_exactly(tmp_path, caplog):
    """5 batches per epoch, a checkpoint after batch 3 of each; stopped at iteration 9 (saved at 8: epoch 2 batch 3)."""
    uninterrupted = _shuffled_training(tmp_path / "a", max_epochs=4, interval=3)
    with pytest.raises(_Interrupted):
        _shuffled_training(tmp_path / "b", max_epochs=4, interval=3, stop_at=9)
    saved = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert saved["trainer"]["iteration"] == 8 and "epoch_random_states" in saved
    with caplog.at_level("INFO"):
        resumed = _shuffled_training(tmp_path / "b", max_epochs=4, interval=3, resume=True)
    assert "at iteration 3/5 of epoch 2" in caplog.text
    torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)


def test_saving_leaves_the_augmentation_streams_alone(tmp_path):
    """A checkpoint reads the transforms' generators; it must not re-seed them (``Compose.flatten()`` would)."""

    def draws(save: bool) -> list[float]:
        transforms = Compose([Compose([RandGaussianNoised("image", prob=1.0)]), RandFlipd("image", prob=0.5)])
        transforms.set_random_state(3)
        handler = TrainingCheckpoints(tmp_path, torch.nn.Linear(1, 1), random_transforms=transforms)
        values = []
        for _ in range(3):
            values.append(float(transforms({"image": torch.zeros(1, 2, 2)})["image"].sum()))
            if save:
                handler._random_states()
        return values

    assert draws(save=True) == draws(save=False)


def test_resume_refuses_another_epoch_length(tmp_path):
    network = torch.nn.Linear(2, 1)
    trainer, _ = _trainer(network, set())
    TrainingCheckpoints(tmp_path, network).attach(trainer)
    trainer.run([0, 1, 2], max_epochs=1)
    trainer, _ = _trainer(network, set())
    TrainingCheckpoints(tmp_path, network, resume=True).attach(trainer)
    with pytest.raises(ValueError, match="saved with 3 iterations per epoch, this run has 2; resume with the data"):
        trainer.run([0, 1], max_epochs=2)


def test_resume_without_checkpoint_names_the_file(tmp_path):
    network = torch.nn.Linear(2, 1)
    trainer, _ = _trainer(network, set())
    TrainingCheckpoints(tmp_path, network, resume=True).attach(trainer)
    with pytest.raises(ValueError, match=r"resume is true but .*last.pt does not exist"):
        trainer.run([0], max_epochs=1)


def test_state_objects_need_state_dicts(tmp_path):
    with pytest.raises(ValueError, match=r"state_objects\['scheduler'\] \(object\) has no state_dict"):
        TrainingCheckpoints(tmp_path, torch.nn.Linear(1, 1), state_objects={"scheduler": object()})


def test_learning_rate_is_logged(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    writer = SummaryWriter(tmp_path)
    written = []
    writer.add_scalar = lambda tag, value, step: written.append((tag, value, step))
    trainer = Engine(lambda engine, batch: None)
    LearningRateLogger(optimizer, summary_writer=writer).attach(trainer)
    trainer.run([0], max_epochs=2)
    assert written == [("lr", 0.25, 1), ("lr", 0.25, 2)]


def test_validation_panel_keeps_the_same_balanced_cases(tmp_path):
    writer = SummaryWriter(tmp_path)
    images = []
    writer.add_image = lambda tag, image, step, dataformats: images.append((step, image.shape))
    samples = []
    for i in range(6):
        label = torch.zeros(1, 8, 8)
        label[0, 2:4, 2:4] = float(i % 3 == 0)  # cases 0 and 3 hold a structure
        image = MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": f"/data/{i}.tif"})
        samples.append({"image": image, "label": label, "pred": label.clone()})
    evaluator = Engine(lambda engine, batch: [samples[batch]])
    panel = ValidationPanel(num_cases=3, summary_writer=writer, per_row=2)
    panel.attach(evaluator)
    evaluator.run(list(range(6)), max_epochs=1)
    assert panel.case_ids == ["0", "1", "2"]  # one of the two positives, then negatives, in loader order
    evaluator.run(list(reversed(range(6))), max_epochs=2)
    assert panel.case_ids == ["0", "1", "2"]
    assert images == [(1, (3, 16, 16)), (2, (3, 16, 16))]


def test_overlay_colours_label_green_and_prediction_red():
    label = torch.zeros(1, 2, 2)
    pred = torch.zeros(1, 2, 2)
    label[0, 0, 0] = pred[0, 1, 1] = 1
    picture = overlay(torch.zeros(1, 2, 2), label, pred)
    assert picture[:, 0, 0].tolist() == pytest.approx([0.0, 0.4, 0.0])
    assert picture[:, 1, 1].tolist() == pytest.approx([0.4, 0.0, 0.0])
    assert tile_grid([picture] * 3, per_row=2).shape == (3, 4, 4)
