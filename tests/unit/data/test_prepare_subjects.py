"""``nerveseg prepare``'s split by subject: given test and validation subjects (lists or files), the random
split otherwise, and what the report and the command line say about either."""

from __future__ import annotations

import json

import pytest

from conftest import all_items, check_prepared_pairs, check_subject_grouping, image_mask_folders
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.prepare import prepare
from nerveseg.scripts import cli
from nerveseg.utils.errors import UserInputError


def _labelled_subjects(items: list[dict]) -> set[str]:
    return {item["subject"] for item in items if "label" in item}


def test_given_subjects_form_test_and_validation(tiny_dataset, tmp_path):
    out = tmp_path / "given" / "datalist.json"
    report = prepare("nerve", tiny_dataset, out, test_subjects=(1,), val_subjects=["2"])  # fire's forms of 1 and "2"
    datalist = json.loads(out.read_text())
    assert _labelled_subjects(datalist["test"]) == {"1"}
    assert _labelled_subjects(datalist["validation"]) == {"2"}
    assert _labelled_subjects(datalist["training"]) == {"3", "4"}
    assert sum("label" not in item for item in datalist["test"]) == 3  # the unlabelled test/ images stay in test
    assert not any("fold" in item for item in all_items(datalist)) and report["folds"] == {}
    assert report["subjects"] == {"training": ["3", "4"], "validation": ["2"], "test": ["1"]}
    parameters = report["parameters"]
    assert parameters["test_subjects"] == ["1"] and parameters["val_subjects"] == ["2"]
    assert parameters["num_folds"] is None and parameters["val_fold"] is None
    assert json.loads((out.parent / "report.json").read_text())["subjects"] == report["subjects"]
    assert sorted(report["dropped_duplicates"]) == ["1_2", "3_5"]  # duplicates are still cleaned
    check_prepared_pairs(out.parent, datalist)

    balanced = prepare("nerve", tiny_dataset, tmp_path / "b" / "datalist.json", test_subjects=[1], val_subjects=[2],
                       balance=True)  # fmt: skip
    again = json.loads((tmp_path / "b" / "datalist.json").read_text())
    assert again["validation"] == datalist["validation"] and again["test"] == datalist["test"]
    positive = [item["area"] > 0 for item in again["training"]]
    assert sum(positive) == len(positive) - sum(positive) > 0  # balancing touches training only
    assert balanced["subjects"]["validation"] == ["2"]


def test_a_random_test_share_is_drawn_beside_given_validation_subjects(tiny_dataset, tmp_path):
    for seed in range(4):
        out = tmp_path / str(seed) / "datalist.json"
        report = prepare("nerve", tiny_dataset, out, val_subjects=[1, 2], test_fraction=0.3, seed=seed)
        assert report["subjects"]["validation"] == ["1", "2"]  # never drawn into test
        assert len(report["subjects"]["test"]) == 1 and report["subjects"]["test"][0] in ("3", "4")


def test_given_test_subjects_from_a_file_keep_the_folds(tiny_dataset, tmp_path):
    names = tmp_path / "test_subjects.txt"
    names.write_text("# the published test subjects\n\n4  # the last one\n")
    out = tmp_path / "out" / "datalist.json"
    report = prepare("nerve", tiny_dataset, out, num_folds=2, test_subjects=str(names))
    datalist = json.loads(out.read_text())
    assert _labelled_subjects(datalist["test"]) == {"4"}
    check_subject_grouping(datalist)
    assert report["parameters"]["test_subjects"] == ["4"]
    assert report["parameters"]["test_subjects_file"] == str(names.absolute())
    assert "val_subjects_file" not in report["parameters"] and report["parameters"]["val_subjects"] is None
    assert report["subjects"]["test"] == ["4"] and set(report["folds"]) == {"0", "1"}
    assert sorted(report["subjects"]["training"] + report["subjects"]["validation"]) == ["1", "2", "3"]
    assert report["subjects"]["validation"] == sorted(_labelled_subjects(datalist["validation"]))


def test_without_given_subjects_the_report_lists_the_random_split(tiny_dataset, tmp_path):
    report = prepare("nerve", tiny_dataset, tmp_path / "out" / "datalist.json", num_folds=2, test_fraction=0.25)
    datalist = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert report["parameters"]["test_subjects"] is None and report["parameters"]["val_subjects"] is None
    for name in ("training", "validation", "test"):
        assert report["subjects"][name] == sorted(_labelled_subjects(datalist[name]))
    assert len(report["subjects"]["test"]) == 1


UNKNOWN = r"test_subjects: '9' \(1 of 2 names\) match no subject of the data, whose 6 subjects are '0', '1', '2', '3', "
ALL_NAMED = "test_subjects and val_subjects name all 6 subjects with labelled images; leave some for training"


@pytest.mark.parametrize(
    "given, error, message, early",
    [
        ({"test_subjects": [9, "1"]}, DatasetError, UNKNOWN + r"'4' \(and 1 more\)\. Correct or remove them", True),
        ({"val_subjects": "x"}, DatasetError, r"val_subjects: x is not a file; give a text file", True),
        ({"test_subjects": [1, 2], "val_subjects": (2, 3)}, DatasetError, "test_subjects and val_subjects both", True),
        ({"test_subjects": [1], "test_fraction": 0.2}, UserInputError, "test_fraction=0.2 both choose", True),
        ({"test_subjects": [0, 1, 2], "val_subjects": [3, 4, 5]}, DatasetError, ALL_NAMED, False),
    ],
    ids=["unknown", "not-a-file", "in-both", "with-test-fraction", "none-left"],
)
def test_subject_errors_write_nothing(tmp_path, monkeypatch, given, error, message, early):
    from nerveseg.bundle.data import prepare as preparation

    src = image_mask_folders(tmp_path / "src")
    earlier = tmp_path / "earlier" / "datalist.json"
    prepare("folders", src, earlier, num_folds=2)
    before = {path: path.read_bytes() for path in earlier.parent.rglob("*") if path.is_file()}
    if early:  # checked before any image is converted
        monkeypatch.setattr(preparation, "_save", lambda *args: pytest.fail("an image was written"))
    with pytest.raises(error, match=message):
        prepare("folders", src, earlier, num_folds=2, **given)
    assert {path: path.read_bytes() for path in earlier.parent.rglob("*") if path.is_file()} == before
    with pytest.raises(error, match=message):
        prepare("folders", src, tmp_path / "new" / "datalist.json", num_folds=2, **given)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["earlier", "src"]


def test_given_subject_without_labelled_images_left(tmp_path):
    src = image_mask_folders(tmp_path / "src")
    (src / "images" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"val_subjects: no labelled image is left of '2' .* remove them from val"):
        prepare("folders", src, tmp_path / "out" / "datalist.json", skip_bad=True, val_subjects=[2, 3])
    assert not (tmp_path / "out").exists()


def test_command_line_says_how_test_and_validation_were_chosen(tmp_path, capsys):
    src = image_mask_folders(tmp_path / "src")
    cli.prepare("folders", src=str(src), out=str(tmp_path / "a" / "datalist.json"), test_subjects=(0, 1),
                val_subjects=2)  # fmt: skip
    printed = capsys.readouterr().out
    assert "test: the 2 given test_subjects; validation: the 1 given val_subjects (no folds)" in printed
    cli.prepare("folders", src=str(src), out=str(tmp_path / "b" / "datalist.json"), num_folds=2, test_fraction=0.3)
    printed = capsys.readouterr().out
    assert "test: test_fraction 0.3 of the subjects, drawn at random (seed 0)" in printed
    assert "validation: fold 0 of 2 subject-grouped folds (seed 0)" in printed


# ---- nerve layout: masks in another format than their images, lossy (JPEG) masks --------------------------------
