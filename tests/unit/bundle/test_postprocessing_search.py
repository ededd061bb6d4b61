"""Post-processing tuned by an evaluator handler, and configs/tune.json, which attaches it to the evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Activationsd
from torch import nn

from conftest import CONFIGS
from nerveseg.bundle.handlers import PostprocessingSearch
from nerveseg.bundle.tuning import PostprocessingChoice, choose_postprocessing
from nerveseg.utils.class_logits import with_class_logits

TUNE_STACK = [str(CONFIGS / name) for name in ("train.json", "evaluate.json", "tune.json")]


class ProbabilityNetwork(nn.Module):
    """Returns the logits of the probability map in channel 0 and, optionally, channel 1's mean as presence."""

    def __init__(self, presence: bool) -> None:
        super().__init__()
        self.presence = presence

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = torch.logit(image[:, :1], eps=1e-4)
        if not self.presence:
            return logits
        return with_class_logits(logits, torch.logit(image[:, 1].mean(dim=(1, 2)), eps=1e-4)[:, None], image)


def _frames() -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """A nerve found at 0.6, a large false positive at 0.9 on an empty frame, and an empty frame; 16x16."""
    nerve, speck = torch.zeros(16, 16), torch.zeros(16, 16)
    nerve[2:10, 2:10] = 0.6  # 64 px
    speck[4:14, 4:14] = 0.9  # 100 px: larger and surer than the nerve, so only the gate removes it
    probabilities = [nerve, speck, torch.zeros(16, 16)]
    labels = [(nerve > 0).float(), torch.zeros(16, 16), torch.zeros(16, 16)]
    return probabilities, labels, [0.9, 0.2, 0.3]


def _run(handler: PostprocessingSearch, presence: bool, batch_size: int = 2) -> SupervisedEvaluator:
    probabilities, labels, presences = _frames()
    data = [
        {"image": MetaTensor(torch.stack([p, torch.full_like(p, q)])), "label": label[None]}
        for p, label, q in zip(probabilities, labels, presences, strict=True)
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=batch_size),
        network=ProbabilityNetwork(presence),
        postprocessing=Activationsd(keys="pred", sigmoid=True),
        val_handlers=[handler],
    )
    evaluator.run()
    return evaluator


GRID = {"thresholds": [0.5], "min_areas": [0, 100], "gate_thresholds": [0.0, 0.5]}


def test_with_presence_the_gate_is_searched_and_the_override_written(tmp_path):
    handler = PostprocessingSearch(tmp_path / "eval" / "postprocessing.json", **GRID)
    _run(handler, presence=True)
    assert handler.best == PostprocessingChoice(0.5, 0, 0.5, 1.0)
    assert handler.default == PostprocessingChoice(0.5, 0, 0.0, pytest.approx(2 / 3))
    assert (handler.num_images, handler.presence_searched) == (3, True)
    probabilities, labels, presence = _frames()
    assert (handler.best, handler.default) == choose_postprocessing(probabilities, labels, presence, **GRID)
    assert json.loads(handler.output_path.read_text()) == {"threshold": 0.5, "min_area": 0, "gate_threshold": 0.5}
    assert [p.name for p in handler.output_path.parent.iterdir()] == ["postprocessing.json"]
    summary = handler.summary()
    assert "3 validation images; presence gate searched" in summary
    assert "default" in summary and "tuned" in summary and "1.0000" in summary


def test_without_presence_the_gate_stays_open(tmp_path):
    handler = PostprocessingSearch(tmp_path / "postprocessing.json", **GRID)
    _run(handler, presence=False, batch_size=3)
    assert handler.best == PostprocessingChoice(0.5, 0, 0.0, pytest.approx(2 / 3))
    assert not handler.presence_searched and "presence gate not available" in handler.summary()
    assert json.loads(handler.output_path.read_text())["gate_threshold"] == 0.0


def test_a_second_run_collects_afresh(tmp_path):
    handler = PostprocessingSearch(tmp_path / "postprocessing.json", **GRID)
    evaluator = _run(handler, presence=True, batch_size=1)
    evaluator.run()
    assert handler.num_images == 3 and handler.best.mean_dice == 1.0


def test_bad_grid_and_early_summary_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"thresholds must be a non-empty list of values in \[0.0, 1.0\)"):
        PostprocessingSearch(tmp_path / "out.json", thresholds=[1.5])
    with pytest.raises(ValueError, match="min_areas"):
        PostprocessingSearch(tmp_path / "out.json", min_areas=[])
    with pytest.raises(RuntimeError, match="No search has run yet"):
        PostprocessingSearch(tmp_path / "out.json").summary()


@pytest.mark.parametrize("network", [[], [str(CONFIGS / "networks" / "presence_gated.json")]], ids=["unet", "gated"])
def test_tune_json_runs_probabilities_with_the_gate_open_and_nothing_of_the_report(network):
    parser = ConfigParser()
    parser.read_config([*TUNE_STACK[:2], *network, TUNE_STACK[2]])
    evaluation = ConfigParser()
    evaluation.read_config([*TUNE_STACK[:2], *network])
    assert parser.get_parsed_content("gate_threshold") == 0.0
    assert parser["validate#postprocessing"]["transforms"] == "@probability_transforms"
    loader, search = parser["validate#handlers"]
    assert loader in evaluation["validate#handlers"]  # the checkpoint the evaluation loads
    assert search.replace("::", "#") == "@validate#postprocessing_search"  # MONAI stores ids with "::"
    assert isinstance(parser.get_parsed_content("validate#postprocessing_search"), PostprocessingSearch)
    assert parser["validate#key_metric"] is None and parser["validate#logging_handlers"] == []
    assert parser.get_parsed_content("tuned_postprocessing_path") == "./outputs/eval/postprocessing.json"
    assert parser["run_log"]["path"] == "$@eval_dir + '/tune.log'"  # evaluate.log stays the evaluation's
    assert [step.replace("::", "#") for step in parser["tuning"]] == ["$@validate#evaluator.run()"]
    if network:
        assert parser["network_def"]["threshold"] == 0.0  # the network keeps every mask; the search gates
