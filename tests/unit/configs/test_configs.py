"""The configs: required bundle properties, resolvable targets, and the restatements kept in step."""

from __future__ import annotations

import json
from pydoc import locate

import pytest
import torch
from monai.bundle import ComponentLocator, ConfigParser, ConfigWorkflow
from monai.inferers import SimpleInferer

from conftest import CONFIGS
from nerveseg.bundle.inference.accelerated import AcceleratedInferer
from nerveseg.bundle.inference.inferers import ASMEInferer, FlipTTAInferer

TRAIN = str(CONFIGS / "train.json")
EVALUATE = [TRAIN, str(CONFIGS / "evaluate.json")]
INFERENCE = str(CONFIGS / "inference.json")
META = str(CONFIGS / "metadata.json")
CONFIG_FILES = sorted(CONFIGS.rglob("*.json"))


@pytest.mark.parametrize(
    "config_file, workflow_type, run_id",
    [
        (TRAIN, "train", "training"),
        (TRAIN, "train", "run"),
        (EVALUATE, "eval", "evaluating"),
        (INFERENCE, "infer", "inference"),
        (INFERENCE, "infer", "run"),
    ],
)
def test_required_properties(config_file, workflow_type, run_id, tmp_path, tiny_dataset):
    if workflow_type != "train":  # evaluation and inference check at start-up that there is a model to load
        parser = ConfigParser()
        parser.read_config(config_file)
        (tmp_path / "models").mkdir()
        torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    workflow = ConfigWorkflow(
        config_file=config_file,
        meta_file=META,
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        run_id=run_id,
        output_dir=str(tmp_path),
        ckpt_dir=str(tmp_path / "models"),
        dataset_dir=str(tiny_dataset),
        num_workers=0,
        image_size=[64, 96],
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert run_id in workflow.parser


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: p.name)
def test_every_target_resolves(config_file):
    locator = ComponentLocator()
    targets = list(_targets(json.loads(config_file.read_text())))
    for target in targets:
        path = target if "." in target else f"{locator.get_component_module_name(target)}.{target}"
        component = locate(path)
        assert callable(component), f"{config_file.name}: _target_ {target!r} does not resolve"
        if "." in target and not target.startswith(("torch.", "ignite.", "monai.")):
            assert target.startswith("nerveseg."), f"{config_file.name}: bundle code must be named nerveseg.*: {target}"


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: p.name)
def test_no_import_of_bundle_code(config_file):
    text = config_file.read_text()
    assert "$import nerveseg" not in text and "$from nerveseg" not in text


def test_inference_restates_train_network_and_preprocessing():
    """MONAI Label and deployment read inference.json alone, so it restates what train.json defines."""
    train, infer = ConfigParser(), ConfigParser()
    train.read_config(TRAIN)
    infer.read_config(INFERENCE)
    assert infer["network_def"] == train["network_def"]
    assert infer["image_size"] == train["image_size"]
    load_image, _, scale_image, _ = train["load_transforms"]
    (resize,) = train["resize_transforms"]
    resize_image = {**resize, "keys": "image", "mode": resize["mode"][0], "anti_aliasing": resize["anti_aliasing"][0]}
    resize_image.pop("allow_missing_keys")
    assert infer["preprocessing"]["transforms"] == [load_image, scale_image, resize_image]
    evaluate = ConfigParser()
    evaluate.read_config(EVALUATE)
    assert infer["mask_transforms"] == evaluate["mask_transforms"]
    for key in ("threshold", "min_area", "min_component", "gate_threshold"):
        assert infer[key] == train[key], key
    for key in ("inference_precision", "channels_last", "inference_backend", "inference_cache_dir", "view_inferer"):
        assert infer[key] == evaluate[key], key
    assert infer["inferer"] == evaluate["inferer"]


@pytest.mark.parametrize(
    "extra, view_inferer, precision, channels_last, backend",
    [
        ([], SimpleInferer, "auto", True, "auto"),
        (["eager.json"], SimpleInferer, "float32", False, "torch"),
        (["asme.json"], ASMEInferer, "auto", True, "auto"),
        (["flip_tta.json", "eager.json"], FlipTTAInferer, "float32", False, "torch"),
    ],
)
def test_the_fast_path_wraps_every_view_inferer_and_eager_json_turns_it_off(
    extra, view_inferer, precision, channels_last, backend, tmp_path
):
    for base in (EVALUATE, [INFERENCE]):
        parser = ConfigParser()
        parser.read_config([*base, *(str(CONFIGS / e) for e in extra)])
        parser["checkpoint_path"] = str(tmp_path / "run" / "model_swa.pt")
        inferer = parser.get_parsed_content("inferer")
        assert isinstance(inferer, AcceleratedInferer) and type(inferer.inferer) is view_inferer
        assert (inferer.precision, inferer.channels_last, inferer.backend) == (precision, channels_last, backend)
        assert inferer.cache_dir == str(tmp_path / "run" / "openvino")  # beside the checkpoint


def test_override_files_only_set_existing_keys():
    """An override that names a key no base config has is a typo that MONAI would silently add."""
    bases = []
    for stack in ([TRAIN], EVALUATE, [INFERENCE]):
        parser = ConfigParser()
        parser.read_config(stack)
        bases.append(parser)
    overrides = [
        p for p in CONFIG_FILES if p.name not in {"train.json", "evaluate.json", "inference.json", "metadata.json"}
    ]
    for path in overrides:
        text = path.read_text()
        for key in json.loads(text):
            defined_here = f"@{key}" in text  # a helper the file defines and uses itself
            parent = key.rpartition("#")[0]
            exists = any(key in base for base in bases)
            new_argument = bool(parent) and any(parent in b and isinstance(b[parent], dict) for b in bases)
            workflow_step = key in {
                "finalize",
                "tuning",
            }  # run ids: MONAI runs finalize after `run`; tune.json adds tuning
            assert exists or defined_here or new_argument or workflow_step, (
                f"{path.name} sets {key!r}, which neither train.json, evaluate.json nor inference.json defines"
            )
