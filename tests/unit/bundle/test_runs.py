"""The one way to a bundle run: config stacks, overrides, the network they build and the run's own log handlers."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import BUNDLE_ROOT
from nerveseg.bundle import runs
from nerveseg.utils.errors import UserInputError, find_user_error

TINY_BASIC_UNET = {"network_def#features": [4, 4, 8, 8, 16, 4]}


def test_config_files_resolve_against_the_bundle_root_and_name_the_fix(tmp_path):
    train = BUNDLE_ROOT / "configs" / "train.json"
    assert runs.config_files(BUNDLE_ROOT, "configs/train.json", train) == [str(train)] * 2
    with pytest.raises(
        UserInputError, match=rf"{tmp_path}/configs/train.json not found; paths are relative to --bundle"
    ):
        runs.config_files(tmp_path, "configs/train.json")


def test_read_config_stacks_files_and_overrides():
    files = runs.config_files(BUNDLE_ROOT, "configs/train.json", "configs/networks/flexible_unet.json")
    parser = runs.read_config(files, {"image_size": [32, 48], "network_def#backbone": "efficientnet-b0"})
    assert parser["image_size"] == [32, 48]
    assert (
        parser["network_def"]["_target_"] == "FlexibleUNet" and parser["network_def"]["backbone"] == "efficientnet-b0"
    )


def test_build_network_is_seeded_and_in_eval_mode():
    files = runs.config_files(BUNDLE_ROOT, "configs/train.json")
    first, second = (runs.build_network(files, TINY_BASIC_UNET) for _ in range(2))
    assert not first.training
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    other = runs.build_network(files, TINY_BASIC_UNET, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters(), strict=True))


def test_tune_reads_the_override_file_the_tuning_run_writes():
    """The runs' contract with configs/tune.json: the id it reads names the file the handler writes."""
    files = runs.config_files(BUNDLE_ROOT, "configs/train.json", "configs/evaluate.json", runs.TUNE_CONFIG)
    parser = runs.read_config(files, {"output_dir": "/runs/x"})
    assert parser.get_parsed_content(runs.TUNED_OVERRIDE_ID) == "/runs/x/eval/postprocessing.json"
    assert "tuning" in parser


def test_run_workflow_refuses_an_unknown_run_id():
    with pytest.raises(ValueError, match="run_id 'fitting' is not one of training, evaluating, tuning"):
        runs.run_workflow([str(BUNDLE_ROOT / "configs" / "train.json")], "fitting")


def test_a_failed_run_closes_its_log_and_leaves_the_root_logger_as_it_was(tmp_path):
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    overrides = {"bundle_root": str(BUNDLE_ROOT), "output_dir": str(tmp_path), "num_epochs": 0}
    with pytest.raises(RuntimeError, match="check_training_settings") as raised:
        runs.run_workflow([str(BUNDLE_ROOT / "configs" / "train.json")], "training", overrides)
    assert str(find_user_error(raised.value)).startswith("num_epochs is 0")
    assert root.handlers == before and root.level == level
    assert (tmp_path / "train.log").is_file()  # it was open while the run started


def test_overrides_read_as_monai_bundle_reads_the_command_line():
    overrides = runs.parse_overrides("--ckpt_dir 'models/my run' --batch_size 4 --image_size '[224, 288]' --amp true")
    assert overrides == {"ckpt_dir": "models/my run", "batch_size": 4, "image_size": [224, 288], "amp": "true"}
    assert runs.parse_overrides("") == {}


@pytest.mark.parametrize("text", ["--batch_size", "--batch_size 4 8", "batch_size 4"])
def test_overrides_that_do_not_pair_up_are_refused_with_the_form(text):
    with pytest.raises(UserInputError, match="overrides must be pairs of --key value"):
        runs.parse_overrides(text)


def test_overrides_given_without_equals_sign_say_how_to_write_them():
    with pytest.raises(UserInputError, match=r"write it with '=': --overrides=\"--inference_backend torch\""):
        runs.parse_overrides(True)  # what fire gives for `--overrides "--inference_backend torch"`


@pytest.mark.parametrize(
    "given",
    [
        "['configs/inference.json','configs/live.json']",
        ["configs/inference.json", "configs/live.json"],
        "configs/inference.json,configs/live.json",
        "configs/inference.json, configs/live.json,",
    ],
    ids=["text", "list from fire", "comma-separated", "commas and spaces"],
)
def test_config_lists_read_as_monai_bundle_reads_them(given):
    assert runs.parse_config_list(given) == ["configs/inference.json", "configs/live.json"]
    assert runs.parse_config_list("configs/inference.json") == ["configs/inference.json"]


@pytest.mark.parametrize("given", [3, [], "[1, 2]"])
def test_a_config_list_without_file_names_is_refused_with_the_form(given):
    with pytest.raises(UserInputError, match="--config_file must name config files, got .*; e.g. --config_file"):
        runs.parse_config_list(given)
