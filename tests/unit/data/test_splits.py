"""Subject-grouped folds and hold-out, stratified by positive rate; 1:1 positive/negative balancing; given subjects."""

from __future__ import annotations

import numpy as np
import pytest

from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.data.splits import (
    assign_folds,
    balance_positives,
    check_subjects,
    hold_out_subjects,
    read_subjects,
    sorted_subjects,
    split_off_subjects,
)
from nerveseg.utils.errors import UserInputError

# Largest fold rate deviation measured over 20 such sets x 3 seeds: 0.0007 (2 folds), 0.0023 (5), 0.015 (10).
RATE_TOLERANCE = {2: 0.01, 5: 0.01, 10: 0.025}


def _challenge_like(seed: int = 0) -> tuple[list[dict], list[bool]]:
    """Items shaped like the nerve challenge: 47 subjects, 110-130 frames, positive rates ~ Beta(0.7, 1.0)."""
    rng = np.random.default_rng(seed)
    items, positive = [], []
    for subject in range(1, 48):
        rate = rng.beta(0.7, 1.0)
        for frame in range(1, int(rng.integers(110, 131)) + 1):
            items.append(
                {"image": f"{subject}_{frame}.tif", "label": f"{subject}_{frame}_mask.tif", "subject": str(subject)}
            )
            positive.append(bool(rng.random() < rate))
    return items, positive


def _small(num_subjects: int = 6, frames: int = 4) -> list[dict]:
    return [{"image": f"{s}_{f}.tif", "subject": str(s)} for s in range(1, num_subjects + 1) for f in range(frames)]


@pytest.mark.parametrize("num_folds", [2, 5, 10])
def test_folds_group_subjects_and_match_the_overall_positive_rate(num_folds):
    items, positive = _challenge_like()
    folds = np.array(assign_folds(items, num_folds, seed=0, positive=positive))
    subjects = np.array([item["subject"] for item in items])
    assert sorted(set(folds.tolist())) == list(range(num_folds))
    for subject in set(subjects):
        assert len(set(folds[subjects == subject])) == 1, f"subject {subject} is in several folds"
    positive = np.array(positive)
    for fold in range(num_folds):
        assert abs(positive[folds == fold].mean() - positive.mean()) < RATE_TOLERANCE[num_folds]
        num_subjects = len(set(subjects[folds == fold]))
        assert num_subjects in (47 // num_folds, 47 // num_folds + 1)
        share = (folds == fold).sum() / len(items)  # of the images, against the fold's share of the subjects
        assert abs(share / (num_subjects / 47) - 1) < 0.05


def test_folds_are_deterministic_and_depend_on_the_seed():
    items, positive = _challenge_like()
    first = assign_folds(items, 5, seed=3, positive=positive)
    assert first == assign_folds(items, 5, seed=3, positive=positive)
    assert first != assign_folds(items, 5, seed=4, positive=positive)
    assert assign_folds(list(reversed(items)), 5, seed=3, positive=list(reversed(positive))) == first[::-1]


def test_folds_without_positive_balance_sizes():
    items = [{"image": f"{s}_{f}", "subject": str(s)} for s in range(1, 11) for f in range(s)]  # 1..10 frames
    folds = np.array(assign_folds(items, 2))
    assert sorted(np.bincount(folds).tolist()) == [27, 28]


@pytest.mark.parametrize("num_folds", [1, 0, 7])
def test_fold_count_errors_name_both_numbers(num_folds):
    with pytest.raises(ValueError, match=rf"number of subjects \(6\), got {num_folds}"):
        assign_folds(_small(6), num_folds)


def test_input_errors():
    with pytest.raises(ValueError, match="positive has 3 entries but there are 24 items"):
        assign_folds(_small(), 2, positive=[True, False, True])
    with pytest.raises(ValueError, match="no 'subject' key"):
        assign_folds([{"image": "a.tif"}, {"image": "b.tif"}], 2)
    with pytest.raises(ValueError, match="fraction must be in"):
        hold_out_subjects(_small(), 1.0)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        hold_out_subjects(_small(1), 0.5)


def test_hold_out_is_disjoint_stratified_and_deterministic():
    items, positive = _challenge_like(1)
    kept, held = hold_out_subjects(items, 0.2, seed=0, positive=positive)
    assert len(kept) + len(held) == len(items)
    held_subjects = {item["subject"] for item in held}
    assert len(held_subjects) == round(0.2 * 47)
    assert not {item["subject"] for item in kept} & held_subjects
    assert kept == [item for item in items if item["subject"] not in held_subjects]  # original order
    positive = np.array(positive)
    is_held = np.array([item["subject"] in held_subjects for item in items])
    assert abs(positive[is_held].mean() - positive.mean()) < 0.01  # measured: at most 0.0014 over 20 such sets
    assert (kept, held) == hold_out_subjects(items, 0.2, seed=0, positive=positive)
    assert held != hold_out_subjects(items, 0.2, seed=1, positive=positive)[1]


def test_hold_out_keeps_a_subject_on_each_side():
    for fraction in (0.01, 0.99):
        kept, held = hold_out_subjects(_small(3), fraction)
        assert len({i["subject"] for i in kept}) >= 1 and len({i["subject"] for i in held}) >= 1


def test_balance_keeps_the_minority_and_as_many_of_the_majority():
    items = _small(5, 10)
    positive = [i % 5 == 0 for i in range(50)]  # 10 positives, 40 negatives
    balanced = balance_positives(items, positive, seed=0)
    flags = [positive[items.index(item)] for item in balanced]
    assert len(balanced) == 20 and sum(flags) == 10
    assert [items.index(item) for item in balanced] == sorted(items.index(item) for item in balanced)
    assert balanced == balance_positives(items, positive, seed=0)
    assert balanced != balance_positives(items, positive, seed=1)
    inverted = balance_positives(items, [not p for p in positive], seed=0)  # positives in the majority
    assert len(inverted) == 20


def test_balance_errors():
    with pytest.raises(ValueError, match="both classes must be present"):
        balance_positives(_small(2, 2), [False] * 4)
    with pytest.raises(ValueError, match="positive has 1 entries"):
        balance_positives(_small(2, 2), [True])


@pytest.mark.parametrize(
    "value, names",
    [(None, None), ((1, 2), ["1", "2"]), ([3, "P 7", 3], ["3", "P 7"]), (7, ["7"]), (["case_01"], ["case_01"])],
    ids=["none", "fire-tuple", "list-kept-once", "fire-number", "name"],
)
def test_read_subjects_from_a_list(value, names):
    assert read_subjects(value, "test_subjects") == (names, None)


def test_read_subjects_from_a_file(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("# published test subjects\n\n  12\n3 # a comment\n12\n")
    assert read_subjects(path, "val_subjects") == (["12", "3"], str(path.absolute()))
    assert read_subjects(str(path), "val_subjects")[0] == ["12", "3"]
    path.write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match=r"val_subjects: .*split\.txt names no subject; name at least one"):
        read_subjects(path, "val_subjects")


def test_read_subjects_errors_say_the_forms():
    with pytest.raises(DatasetError, match=r'test_subjects: nowhere\.txt is not a file; .* --test_subjects "\[1,2\]"'):
        read_subjects("nowhere.txt", "test_subjects")
    with pytest.raises(UserInputError, match=r"val_subjects must be a list .* got 1\.5 \(float\)"):
        read_subjects(1.5, "val_subjects")
    with pytest.raises(DatasetError, match="test_subjects: \\[\\] names no subject"):
        read_subjects([], "test_subjects")


def test_check_subjects_names_the_parameter_and_the_data():
    known = {str(s) for s in range(1, 48)}
    check_subjects({"test_subjects": ["1", "2"], "val_subjects": ["47"]}, known)
    with pytest.raises(DatasetError, match=r"^test_subjects and val_subjects both name '2'; a subject can be in one"):
        check_subjects({"test_subjects": ["1", "2"], "val_subjects": ["2", "3"]}, known)
    with pytest.raises(DatasetError) as error:
        check_subjects({"val_subjects": ["01", "1", "x", "y", "z", "w", "v"]}, known)
    assert str(error.value).startswith(
        "val_subjects: '01', 'x', 'y', 'z', 'w' (and 1 more) (6 of 7 names) match no subject of the data, whose 47 "
        "subjects are '1', '2', '3', '4', '5' (and 42 more). Correct or remove them; "
    )


def test_split_off_subjects_keeps_the_order():
    items = _small(4, 2)
    rest, chosen = split_off_subjects(items, ["3", "1"])
    assert [i["image"] for i in chosen] == ["1_0.tif", "1_1.tif", "3_0.tif", "3_1.tif"]
    assert rest == [item for item in items if item["subject"] in ("2", "4")]
    assert sorted_subjects(["10", "2", "b1", "2", "a"]) == ["2", "10", "a", "b1"]
