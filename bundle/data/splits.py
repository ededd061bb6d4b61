"""Subject-grouped splits: cross-validation folds, a held-out test part, and 1:1 positive/negative balancing.

Frames of one subject (one scan) are near-identical, so every split here keeps a subject's frames together; the nerve
seed split by image and scored 0.724 on validation against 0.701 on the test set. Per-subject positive rates range
from 2% to 89% in the nerve challenge, so the groups are also stratified: subjects are dealt to groups so that each
group's positive rate and image count stay close to the whole set's (the idea of scikit-learn's
``StratifiedGroupKFold``, written here with numpy).

How subjects are dealt (:func:`_deal_subjects`, shared by folds and hold-out): group ``g`` gets a fixed number of
subjects, hence a share ``s_g`` of them. The imbalance of an assignment is the chi-square of the group x class table
(positive and negative image counts) against the counts the shares predict (``s_g x`` class total); it grows when a
group's positive rate drifts from the overall rate and when its image count drifts from its share. Subjects are dealt
in a seeded random order, each to the group with a free place whose chi-square rises least; then pairs of subjects in
different groups are swapped while that lowers the total. The result is deterministic for a seed and differs between
seeds. On 20 synthetic sets shaped like the challenge (47 subjects, rates ~ Beta(0.7, 1.0), 110-130 frames each),
every one of 5 folds had a positive rate within 0.4 percentage points of the overall (ranking subjects by rate and
dealing one per rank block, without swaps, left folds up to 3 points off).

Published splits name their subjects instead: :func:`read_subjects` reads such a list (given, or a text file),
:func:`check_subjects` checks it against the data, and :func:`split_off_subjects` splits those subjects off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from nerveseg.bundle.data.io import DatasetError
from nerveseg.utils.errors import UserInputError

__all__ = [
    "assign_folds",
    "balance_positives",
    "check_subjects",
    "hold_out_subjects",
    "read_subjects",
    "sorted_subjects",
    "split_off_subjects",
]


def _subject_key(subject: str) -> list[int | str]:
    """Natural order of subject names (``"2"`` before ``"10"``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", subject)]


def sorted_subjects(subjects: Collection[str]) -> list[str]:
    """Distinct subject names in natural order (``"2"`` before ``"10"``), as reports and messages list them."""
    return sorted(set(subjects), key=_subject_key)


def _subject_table(items: Sequence[dict], positive: Sequence[bool] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Subjects in natural order with, per subject, its ``[positive, negative]`` image counts and each item's subject.

    Returns:
        ``(subjects, counts, index)``: names; ``counts`` ``[S, 2]``; ``index`` ``[N]`` into ``subjects``.
    """
    if positive is not None and len(positive) != len(items):
        raise ValueError(f"positive has {len(positive)} entries but there are {len(items)} items; give one per item.")
    missing = [item.get("image", item) for item in items if "subject" not in item]
    if missing:
        raise ValueError(
            f"{len(missing)} items have no 'subject' key (first: {missing[0]}); add one, e.g. with "
            "nerveseg.bundle.data.datalist.subject_of(image)."
        )
    subjects = sorted({str(item["subject"]) for item in items}, key=_subject_key)
    lookup = {subject: i for i, subject in enumerate(subjects)}
    index = np.array([lookup[str(item["subject"])] for item in items], dtype=np.int64)
    is_positive = np.zeros(len(items), dtype=bool) if positive is None else np.asarray(positive, dtype=bool)
    counts = np.zeros((len(subjects), 2), dtype=np.int64)
    np.add.at(counts, (index, (~is_positive).astype(np.int64)), 1)
    return subjects, counts, index


def _chi_square(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Chi-square per row of observed vs expected counts, skipping cells expected to be empty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(expected > 0, (observed - expected) ** 2 / expected, 0.0)
    return cells.sum(axis=-1)


def _deal_subjects(counts: np.ndarray, sizes: Sequence[int], seed: int) -> np.ndarray:
    """Deal subjects to groups holding ``sizes[g]`` subjects each, balanced in positive rate and image count.

    Args:
        counts: ``[S, 2]`` positive and negative image counts per subject.
        sizes: number of subjects per group; sums to ``S``.
        seed: seed of the dealing order; the same seed gives the same groups.

    Returns:
        ``[S]`` group index per subject.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    expected = (sizes / sizes.sum())[:, None] * counts.sum(axis=0)[None, :]  # [G, 2]
    rng = np.random.default_rng(seed)
    groups = np.empty(len(counts), dtype=np.int64)
    observed, free = np.zeros((len(sizes), 2)), sizes.copy()
    for subject in rng.permutation(len(counts)):  # greedy deal: to the free group whose chi-square rises least
        rise = _chi_square(observed + counts[subject], expected) - _chi_square(observed, expected)
        g = int(np.argmin(np.where(free > 0, rise, np.inf)))
        groups[subject], free[g], observed[g] = g, free[g] - 1, observed[g] + counts[subject]
    improved = True
    while improved:  # then swap pairs of subjects between groups while that lowers the total chi-square
        improved = False
        for a in rng.permutation(len(counts)):
            ga, moved = groups[a], counts - counts[a]  # what group ga gains when subject a is swapped for each b
            gain = (
                _chi_square(observed[ga], expected[ga])
                + _chi_square(observed[groups], expected[groups])
                - _chi_square(observed[ga] + moved, expected[ga])
                - _chi_square(observed[groups] - moved, expected[groups])
            )
            b = int(np.argmax(np.where(groups == ga, 0.0, gain)))
            if gain[b] > 1e-9 and groups[b] != ga:
                observed[ga] += moved[b]
                observed[groups[b]] -= moved[b]
                groups[a], groups[b] = groups[b], ga
                improved = True
    return groups


def assign_folds(
    items: Sequence[dict], num_folds: int = 5, seed: int = 0, positive: Sequence[bool] | None = None
) -> list[int]:
    """Fold number (``0..num_folds-1``) per item, grouped by subject and stratified by positive rate.

    Every fold holds ``S // num_folds`` or one more subjects; with ``positive`` given, the folds' positive rates
    stay close to the overall rate, and their image counts close to ``1 / num_folds`` of the total either way.

    Args:
        items: datalist items with a ``subject`` key.
        num_folds: number of folds, at least 2 and at most the number of subjects.
        seed: seed of the deal; the same seed gives the same folds.
        positive: per item, whether its mask has foreground; ``None`` balances image counts only.

    Returns:
        One fold index per item, in the items' order.

    Raises:
        ValueError: for fewer than 2 folds or more folds than subjects, or a ``positive`` of the wrong length.
    """
    subjects, counts, index = _subject_table(items, positive)
    if not 2 <= num_folds <= len(subjects):
        raise UserInputError(
            f"num_folds must be between 2 and the number of subjects ({len(subjects)}), got {num_folds}; "
            "use fewer folds or add subjects."
        )
    sizes = [len(part) for part in np.array_split(np.arange(len(subjects)), num_folds)]
    return _deal_subjects(counts, sizes, seed)[index].tolist()


def hold_out_subjects(
    items: Sequence[dict], fraction: float, seed: int = 0, positive: Sequence[bool] | None = None
) -> tuple[list[dict], list[dict]]:
    """Split off ``fraction`` of the subjects (not images) as a held-out part, stratified by positive rate.

    Args:
        items: datalist items with a ``subject`` key.
        fraction: share of the subjects held out, in (0, 1); at least one subject stays on each side.
        seed: seed of the deal; the same seed gives the same split.
        positive: per item, whether its mask has foreground; ``None`` balances image counts only.

    Returns:
        ``(kept, held_out)`` items in their original order; no subject is in both.

    Raises:
        ValueError: for a fraction outside (0, 1), fewer than 2 subjects, or a ``positive`` of the wrong length.
    """
    if not 0.0 < fraction < 1.0:
        raise UserInputError(f"fraction must be in (0, 1), got {fraction}; e.g. 0.2 holds out a fifth of the subjects.")
    subjects, counts, index = _subject_table(items, positive)
    if len(subjects) < 2:
        raise UserInputError(f"a subject-grouped split needs at least 2 subjects, found {len(subjects)}: {subjects}.")
    num_held = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    held = _deal_subjects(counts, [len(subjects) - num_held, num_held], seed)[index] == 1
    kept = [item for item, h in zip(items, held, strict=True) if not h]
    return kept, [item for item, h in zip(items, held, strict=True) if h]


def balance_positives(items: Sequence[dict], positive: Sequence[bool], seed: int = 0) -> list[dict]:
    """Balance a training part 1:1 as the nerve seed did: all of the minority class, an equal random share of the rest.

    Args:
        items: datalist items.
        positive: per item, whether its mask has foreground.
        seed: seed of the draw from the majority class.

    Returns:
        ``2 * min(#positive, #negative)`` items in their original order.

    Raises:
        ValueError: when ``positive`` has the wrong length or one class is absent (nothing to balance against).
    """
    if len(positive) != len(items):
        raise ValueError(f"positive has {len(positive)} entries but there are {len(items)} items; give one per item.")
    is_positive = np.asarray(positive, dtype=bool)
    pos, neg = np.flatnonzero(is_positive), np.flatnonzero(~is_positive)
    if len(pos) == 0 or len(neg) == 0:
        raise UserInputError(
            f"cannot balance {len(pos)} positive against {len(neg)} negative items; both classes must be present."
        )
    minority, majority = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    drawn = np.random.default_rng(seed).choice(majority, size=len(minority), replace=False)
    keep = np.sort(np.concatenate([minority, drawn]))
    return [items[i] for i in keep]


def read_subjects(
    value: str | os.PathLike | int | Sequence | None, parameter: str
) -> tuple[list[str] | None, str | None]:
    """The subject names a parameter gives: a list of names, or a text file of them (one per line).

    Names are strings, as the data's subjects are: ``fire`` turns ``--test_subjects 1,2`` into ``(1, 2)`` and
    ``--test_subjects 7`` into ``7``. In a file, blank lines and ``#`` comments are ignored. A name given twice is
    kept once, in its first place.

    Args:
        value: ``None``, a list or tuple of names, one number (one name), or the path of a text file.
        parameter: the parameter's name, for messages (``"test_subjects"``).

    Returns:
        ``(names, file)``: the names (``None`` for ``None``) and the absolute path of the file read, if any.

    Raises:
        DatasetError: a path that is not a file, or a list or file that names no subject.
        UserInputError: a value of another type.
    """
    if value is None:
        return None, None
    file = None
    if isinstance(value, (str, os.PathLike)):
        file = Path(value).absolute()
        if not file.is_file():
            raise DatasetError(
                f"{parameter}: {value} is not a file; give a text file with one subject per line, or the names as a "
                f'list: --{parameter} "[1,2]" or --{parameter} 1,2.'
            )
        names = [line.split("#", 1)[0].strip() for line in file.read_text().splitlines()]
    elif isinstance(value, (list, tuple)):
        names = [str(name).strip() for name in value]
    elif isinstance(value, int) and not isinstance(value, bool):
        names = [str(value)]
    else:
        raise UserInputError(
            f"{parameter} must be a list of subject names or a text file of them, got {value!r} "
            f'({type(value).__name__}); e.g. --{parameter} "[1,2]" or --{parameter} subjects.txt.'
        )
    names = list(dict.fromkeys(name for name in names if name))
    if not names:
        raise DatasetError(f"{parameter}: {file or value} names no subject; name at least one, or leave it out.")
    return names, None if file is None else str(file)


def check_subjects(given: Mapping[str, Sequence[str]], known: Collection[str]) -> None:
    """Check subject lists against each other (no subject in two) and against the data (every name is a subject).

    Args:
        given: parameter name -> the subject names it gives (``{"test_subjects": [...], "val_subjects": [...]}``).
        known: the subjects of the data.

    Raises:
        DatasetError: a subject in two lists, or a name that is no subject of the data, naming the parameter, a few
            of the names and a few of the data's subjects.
    """
    seen: dict[str, str] = {}
    for parameter, names in given.items():
        both = [name for name in names if name in seen]
        if both:
            raise DatasetError(
                f"{seen[both[0]]} and {parameter} both name {_few(both)}; a subject can be in one split only: "
                "remove it from one of them."
            )
        seen.update(dict.fromkeys(names, parameter))
    for parameter, names in given.items():
        unknown = [name for name in names if name not in known]
        if unknown:
            raise DatasetError(
                f"{parameter}: {_few(unknown)} ({len(unknown)} of {len(names)} names) match no subject of the data, "
                f"whose {len(known)} subjects are {_few(sorted_subjects(known))}. Correct or remove them; a subject "
                "is the {subject} of the nerve challenge's {subject}_{frame} names, a DICOM's PatientID, or what "
                "subject_regex matches in a folders layout."
            )


def split_off_subjects(items: Sequence[dict], subjects: Collection[str]) -> tuple[list[dict], list[dict]]:
    """Split the items of the given subjects off: ``(rest, chosen)``, both in the items' original order."""
    chosen = {str(subject) for subject in subjects}
    rest = [item for item in items if str(item["subject"]) not in chosen]
    return rest, [item for item in items if str(item["subject"]) in chosen]


def _few(names: Sequence[str], count: int = 5) -> str:
    """At most ``count`` names for a message, and how many more there are."""
    shown = ", ".join(repr(name) for name in names[:count])
    return f"{shown} (and {len(names) - count} more)" if len(names) > count else shown
