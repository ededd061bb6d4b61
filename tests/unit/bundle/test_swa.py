"""Stochastic weight averaging: the mean, the BatchNorm pass, the saved file, resuming, SWALR and one validation."""

from __future__ import annotations

import io
import logging
import math

import ignite.distributed as idist
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanAbsoluteError, ValidationHandler, from_engine
from torch import nn

from nerveseg.bundle.handlers import StochasticWeightAveraging

BATCHES = [torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 1, 1))


def make_trainer(model: nn.Module, optimizer: torch.optim.Optimizer) -> Engine:
    """A trainer whose SGD steps change every weight deterministically."""

    def step(engine: Engine, images: torch.Tensor) -> float:
        model.train()
        optimizer.zero_grad()
        loss = (model(images) - images).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    return Engine(step)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_mean_of_the_averaged_epochs():
    model = make_model()
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    weights = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.update({e.state.epoch: snapshot(model)}))
    swa = StochasticWeightAveraging(model, swa_start=3, num_epochs=8, swa_freq=2)
    swa.attach(trainer)
    trainer.run(BATCHES, max_epochs=8)

    assert swa.averaged_epochs == [3, 5, 7]
    assert int(swa.averaged_model.n_averaged) == 3
    for name, averaged in swa.averaged_model.module.named_parameters():
        expected = torch.stack([weights[epoch][name] for epoch in (3, 5, 7)]).mean(0)
        torch.testing.assert_close(averaged, expected)
        assert not torch.allclose(averaged, weights[8][name])


def test_swa_off_attaches_nothing(tmp_path):
    model = make_model()
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    swa = StochasticWeightAveraging(model, swa_start=None, num_epochs=2, output_path=tmp_path / "model_swa.pt")
    handlers_before = sum(len(h) for h in trainer._event_handlers.values())
    swa.attach(trainer)
    assert sum(len(h) for h in trainer._event_handlers.values()) == handlers_before
    trainer.run(BATCHES, max_epochs=2)
    assert not swa.enabled and swa.averaged_model is None and swa.averaged_epochs == []
    assert swa.state_dict() == {} and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"swa_start": 120}, r"swa_start \(120\) must be less than num_epochs \(100\)"),
        ({"swa_start": 100}, r"swa_start \(100\) must be less than num_epochs"),
        ({"swa_start": 0}, r"swa_start \(0\) must be >= 1"),
        ({"swa_freq": 0}, r"swa_freq must be >= 1, got 0"),
        ({"swa_start": 97, "swa_freq": 5}, r"swa_freq \(5\) leaves only epoch 97"),
        ({"swa_lr": 0.0, "optimizer": "sgd"}, r"swa_lr must be > 0, got 0.0"),
        ({"swa_lr": 0.01}, r"swa_lr is set but optimizer is not"),
        ({"swa_lr": 0.01, "optimizer": "sgd", "anneal_epochs": 0}, r"anneal_epochs must be >= 1"),
    ],
)
def test_bad_settings_name_the_config_key(kwargs, match):
    model = make_model()
    if kwargs.get("optimizer") == "sgd":
        kwargs["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"swa_start": 50, "num_epochs": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        StochasticWeightAveraging(model, **kwargs)


def test_batchnorm_statistics_are_recomputed_for_the_mean():
    model = make_model()
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    images = [torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(10 + i)) + 2.0 for i in range(2)]
    swa = StochasticWeightAveraging(model, swa_start=1, num_epochs=3, bn_loader=[{"image": x} for x in images])
    swa.attach(trainer)
    trainer.run(BATCHES, max_epochs=3)

    averaged = swa.averaged_model.module
    batchnorm = averaged[1]
    with torch.no_grad():
        expected_mean = averaged[0](torch.cat(images)).mean(dim=(0, 2, 3))
    torch.testing.assert_close(batchnorm.running_mean, expected_mean)
    assert not torch.allclose(batchnorm.running_mean, model[1].running_mean)
    assert int(batchnorm.num_batches_tracked) == 2
    assert batchnorm.momentum == 0.1


@pytest.mark.parametrize("data_parallel", [False, True])
def test_saved_file_has_plain_keys_and_no_leftovers(tmp_path, data_parallel):
    model = make_model()
    network = nn.DataParallel(model) if data_parallel else model
    trainer = make_trainer(network, torch.optim.SGD(model.parameters(), lr=0.1))
    path = tmp_path / "models" / "model_swa.pt"
    swa = StochasticWeightAveraging(
        network, swa_start=1, num_epochs=3, output_path=path, bn_loader=[{"image": BATCHES[0]}]
    )
    swa.attach(trainer)
    trainer.run(BATCHES, max_epochs=3)

    assert [p.name for p in path.parent.iterdir()] == ["model_swa.pt"]
    state = torch.load(path, weights_only=True)
    assert set(state) == set(make_model().state_dict())
    fresh = make_model()
    fresh.load_state_dict(state)
    for name, averaged in swa.averaged_model.module.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], averaged)


def test_only_rank_zero_saves(tmp_path, monkeypatch):
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    model = make_model()
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    swa = StochasticWeightAveraging(model, swa_start=1, num_epochs=2, output_path=tmp_path / "model_swa.pt")
    swa.attach(trainer)
    trainer.run(BATCHES, max_epochs=2)
    assert swa.averaged_epochs == [1, 2] and not list(tmp_path.iterdir())


def run_with_swalr(state: dict | None = None, snapshot_epoch: int | None = None) -> tuple:
    """8 epochs of cosine annealing, SWA from epoch 3 with a 3-epoch SWALR anneal; resumed from ``state`` if given."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=8)
    trainer = make_trainer(model, optimizer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())  # as MONAI's LrScheduleHandler
    swa = StochasticWeightAveraging(
        model, swa_start=3, num_epochs=8, swa_freq=1, swa_lr=0.01, optimizer=optimizer, anneal_epochs=3
    )
    swa.attach(trainer)
    lrs = {}
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda e: lrs.update({e.state.epoch: optimizer.param_groups[0]["lr"]})
    )
    saved = {}

    def keep(engine: Engine) -> None:
        buffer = io.BytesIO()
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "swa": swa, "trainer": engine}
        torch.save({k: v.state_dict() for k, v in objects.items()}, buffer)
        buffer.seek(0)
        saved.update(torch.load(buffer, weights_only=True))

    if snapshot_epoch is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=snapshot_epoch), keep)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        swa.load_state_dict(state["swa"])
        trainer.load_state_dict(state["trainer"])
    trainer.run(BATCHES, max_epochs=8)
    return swa, lrs, saved


def test_swalr_takes_over_the_learning_rate():
    _, lrs, _ = run_with_swalr()
    cosine = [0.1 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert lrs[1] == pytest.approx(cosine[0]) and lrs[3] == pytest.approx(cosine[2])
    # a 3-epoch cosine anneal from the rate epoch 4 would have had, although the cosine scheduler keeps stepping
    assert lrs[4] == pytest.approx(0.75 * cosine[3] + 0.25 * 0.01)
    assert lrs[5] == pytest.approx(0.25 * cosine[3] + 0.75 * 0.01)
    assert [lrs[epoch] for epoch in (6, 7, 8)] == pytest.approx([0.01] * 3)


def test_resumed_run_ends_with_the_same_mean():
    uninterrupted, lrs, saved = run_with_swalr(snapshot_epoch=5)
    assert saved["swa"]["averaged_epochs"] == [3, 4, 5]
    resumed, resumed_lrs, _ = run_with_swalr(state=saved)

    assert resumed.averaged_epochs == uninterrupted.averaged_epochs == [3, 4, 5, 6, 7, 8]
    assert resumed_lrs == pytest.approx({epoch: lrs[epoch] for epoch in (6, 7, 8)})
    for (name, expected), actual in zip(
        uninterrupted.averaged_model.state_dict().items(), resumed.averaged_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(actual, expected, msg=name)


def test_validator_scores_the_mean_once_and_leaves_the_run_as_it_was(tmp_path, caplog):
    model = make_model()
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    samples = [{"image": torch.rand(1, 8, 8), "label": torch.rand(1, 8, 8)} for _ in range(2)]
    validator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(samples, batch_size=2),
        network=model,
        key_val_metric={"val_mae": MeanAbsoluteError(output_transform=from_engine(["pred", "label"]))},
        metric_cmp_fn=lambda current, best: True,  # every run is "best", so an SWA run would show in the bookkeeping
    )
    seen = []
    validator.add_event_handler(Events.EPOCH_STARTED, lambda _: seen.append(model[0].weight.detach().clone()))
    ValidationHandler(interval=2, validator=validator).attach(trainer)
    trained = {}
    trainer.add_event_handler(
        Events.COMPLETED,
        lambda _: trained.update(
            weights=snapshot(model), metrics=dict(validator.state.metrics), best=validator.state.best_metric
        ),
    )
    swa = StochasticWeightAveraging(model, swa_start=2, num_epochs=5, swa_freq=2, validator=validator)
    swa.attach(trainer)
    with caplog.at_level(logging.INFO):
        trainer.run(BATCHES, max_epochs=5)

    assert len(seen) == 3  # epochs 2 and 4, then the mean of their weights
    torch.testing.assert_close(seen[-1], swa.averaged_model.module[0].weight)
    for name, weight in model.named_parameters():
        torch.testing.assert_close(weight, trained["weights"][name])
    assert validator.state.best_metric_epoch == 4 and validator.state.best_metric == trained["best"]
    assert validator.state.metrics == trained["metrics"]
    assert isinstance(swa.swa_metric, float) and swa.swa_metric != trained["best"]
    message = f"SWA over epochs 2-4 (2 snapshots, every 2): val val_mae {swa.swa_metric:.4f} vs best epoch 4"
    assert message in caplog.text


def test_validator_needs_a_key_metric():
    model = make_model()
    validator = SupervisedEvaluator(device="cpu", val_data_loader=DataLoader([], batch_size=1), network=model)
    with pytest.raises(ValueError, match="validator has no key metric"):
        StochasticWeightAveraging(model, swa_start=1, num_epochs=2, validator=validator)
