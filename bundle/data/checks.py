"""Data checks: every file checked once where it enters, and re-checked cheaply by every run after.

A check (:func:`check_item`) reads an item's image and mask as the training pipeline's PIL reader will and stops
with one :class:`~nerveseg.bundle.data.io.DatasetError` naming the file: an extension the pipeline cannot read, an
unreadable file, a mask that is not binary, a mask whose size differs from its image's. So a bad file fails before
the first epoch, not in a loader worker halfway through.

Reading every file costs minutes on a real data set, so what was checked is recorded per file: its path, byte size,
modification time (``st_mtime_ns``), ``(H, W)`` shape and, for masks, the foreground pixel count and the
``threshold`` it was counted with (absent: the mask was required to be binary). A file whose size and time still
match a record is not read again, nor a mask whose threshold is the run's ``mask_threshold``; a new, missing or
changed file, or a mask checked with another threshold, is read and checked in full. A record is the JSON
``{"version": 1, "files": {PATH: {"size", "mtime_ns", "shape", "foreground", "threshold"}}}``, kept in two places:

- ``checked.json`` beside the ``datalist.json`` that ``nerveseg prepare`` writes, ``PATH`` relative to that folder:
  prepare checks every file while it converts it, and records the files it wrote. Runs only read it.
- the cache, ``$NERVESEG_CACHE/checks/`` (else ``~/.cache/nerveseg/checks/``): one record per data folder (a
  challenge-layout ``dataset_dir``, the folder of a ``datalist_file``, an inference ``input_dir``), named after the
  folder's absolute path (also stored, as ``"root"``; ``PATH`` is relative to it) and rewritten atomically by a run
  that read files. So the evaluation after a training run on a raw folder reads nothing again, and nothing is
  written into the user's data folder.

Like make and rsync, this trusts size and time: a file rewritten with the same size and time (``touch -r``) is not
read again. Delete the cache record (the file named after the folder) to check everything again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from nerveseg.bundle.data.io import PIL_EXTENSIONS, DatasetError, check_same_shape, extension, read_image, read_mask
from nerveseg.utils.files import write_text_atomically
from nerveseg.utils.progress import progress

__all__ = ["RECORD_NAME", "CheckRecord", "DataChecker", "cache_folder", "check_item"]

RECORD_NAME = "checked.json"
RECORD_VERSION = 1

logger = logging.getLogger(__name__)


def cache_folder() -> Path:
    """Where runs keep their check records: ``$NERVESEG_CACHE/checks``, else ``~/.cache/nerveseg/checks``."""
    return Path(os.environ.get("NERVESEG_CACHE") or Path.home() / ".cache" / "nerveseg").expanduser() / "checks"


class CheckRecord:
    """What was checked under ``root``: per file, its size and time when checked, its shape and mask foreground.

    Args:
        root: the folder the record's paths are relative to (the record stays valid when the folder moves).
        path: the JSON file :meth:`save` writes; ``None`` keeps the record in memory.
    """

    def __init__(self, root: str | os.PathLike, path: str | os.PathLike | None = None) -> None:
        self.root = os.path.abspath(root)
        self.path = None if path is None else Path(path)
        self.files: dict[str, dict] = {}
        self.changed = False

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike) -> CheckRecord:
        """The record saved at ``path``; an empty one when there is none or it is unreadable (logged)."""
        record = cls(root, path)
        try:
            saved = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return record
        except (OSError, ValueError) as e:
            logger.warning(f"{path}: check record unreadable ({e}); its files are checked again.")
            return record
        if isinstance(saved, dict) and saved.get("version") == RECORD_VERSION and isinstance(saved.get("files"), dict):
            record.files = saved["files"]
        else:
            logger.warning(f"{path}: not a version-{RECORD_VERSION} check record; its files are checked again.")
        return record

    def _key(self, file: str | os.PathLike) -> str:
        return os.path.relpath(os.path.abspath(file), self.root)

    def find(self, file: str | os.PathLike, info: os.stat_result) -> dict | None:
        """The entry of ``file`` if its size and modification time are still those recorded, else ``None``."""
        entry = self.files.get(self._key(file))
        if isinstance(entry, dict) and entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns:
            return entry
        return None

    def add(
        self,
        file: str | os.PathLike,
        shape: Sequence[int],
        foreground: int | None = None,
        info: os.stat_result | None = None,
        threshold: float | None = None,
    ) -> dict:
        """Record ``file`` as checked, with its ``stat`` taken before it was read (by default: now).

        ``threshold`` is the one a mask's ``foreground`` was counted with; ``None``: the mask is binary.
        """
        info = os.stat(file) if info is None else info
        entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "shape": [int(n) for n in shape]}
        if foreground is not None:
            entry["foreground"] = int(foreground)
        if threshold is not None:
            entry["threshold"] = float(threshold)
        self.files[self._key(file)] = entry
        self.changed = True
        return entry

    def save(self) -> None:
        """Write the record to :attr:`path` through a temporary file, if it has one and anything was added."""
        if self.path is None or not self.changed:
            return
        saved = {"version": RECORD_VERSION, "files": self.files}
        if os.path.abspath(self.path.parent) != self.root:  # a cache record: say which folder it describes
            saved = {"version": RECORD_VERSION, "root": self.root, "files": self.files}
        text = json.dumps(saved, indent=1)
        write_text_atomically(self.path, text + "\n")
        self.changed = False


class DataChecker:
    """Checks datalist items, reading only the files that no record vouches for.

    Args:
        records: records to trust without writing to them (``nerveseg prepare``'s ``checked.json``).
        cache: the record that files read here are added to; :meth:`save` writes it. By default one in memory, so
            a file is read at most once per checker.
        mask_threshold: ``None``: masks must be binary. A number: a mask's foreground is its pixels ``>=`` it
            (lossy masks, as :func:`~nerveseg.bundle.data.io.read_mask`'s ``threshold``); a recorded mask is reused
            only when it was counted with the same threshold.
    """

    def __init__(
        self,
        records: Iterable[CheckRecord] = (),
        cache: CheckRecord | None = None,
        mask_threshold: float | None = None,
    ) -> None:
        self.cache = cache if cache is not None else CheckRecord(os.curdir)
        self.records = [*records, self.cache]
        self.mask_threshold = mask_threshold
        self.read = 0
        self.reused = 0

    @classmethod
    def for_folder(
        cls,
        folder: str | os.PathLike,
        datalist_file: str | os.PathLike | None = None,
        mask_threshold: float | None = None,
    ) -> DataChecker:
        """The checker of a run on ``folder``: the record ``prepare`` left beside ``datalist_file``, and the cache."""
        records = []
        if datalist_file is not None and (Path(datalist_file).parent / RECORD_NAME).is_file():
            base = Path(datalist_file).parent
            records.append(CheckRecord.load(base / RECORD_NAME, base))
        folder = os.path.abspath(folder)
        digest = hashlib.sha256(folder.encode()).hexdigest()[:16]
        name = f"{Path(folder).name or 'root'}-{digest}.json"
        return cls(records, CheckRecord.load(cache_folder() / name, folder), mask_threshold)

    def file(self, path: str | os.PathLike, mask: bool = False) -> dict:
        """The record entry of ``path``, which is read and checked first unless a record vouches for it unchanged.

        Raises:
            DatasetError: the file is missing, unreadable or (``mask``, without ``mask_threshold``) not binary.
        """
        try:
            info = os.stat(path)
        except OSError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            for record in self.records:
                entry = record.find(path, info)
                if entry is not None and (not mask or self._counted_alike(entry)):
                    self.reused += 1
                    return entry
        array = read_mask(path, threshold=self.mask_threshold) if mask else read_image(path)
        self.read += 1
        if info is None or not stat.S_ISREG(info.st_mode):  # a folder of instance masks: not recorded
            return {"shape": list(array.shape), "foreground": int(np.count_nonzero(array))}
        if not mask:
            return self.cache.add(path, array.shape, info=info)
        return self.cache.add(path, array.shape, int(np.count_nonzero(array)), info, self.mask_threshold)

    def _counted_alike(self, entry: dict) -> bool:
        """Whether a mask's recorded foreground was counted as this checker counts it (same threshold, or binary)."""
        return "foreground" in entry and entry.get("threshold") == self.mask_threshold

    def item(self, item: dict) -> int | None:
        """Check an item's image and (if any) mask; return the mask's foreground pixel count, ``None`` without one."""
        _check_extensions(item, ("image", "label"))
        image = self.file(item["image"])
        if "label" not in item:
            return None
        mask = self.file(item["label"], mask=True)
        check_same_shape(image["shape"], mask["shape"], item["image"], item["label"])
        return mask["foreground"]

    def items(self, items: Sequence[dict], desc: str = "Checking images") -> list[int | None]:
        """:meth:`item` for each item, with a progress bar (plain lines when the output is not a terminal)."""
        with closing(progress(items, desc)) as shown:  # a bar is closed on error too, so the error prints last
            return [self.item(item) for item in shown]

    def foregrounds(self, items: Sequence[dict]) -> list[int]:
        """The foreground pixel count of each item's mask; the masks are checked, the images are not."""
        counts = []
        with closing(progress(items, "Checking masks")) as shown:
            for item in shown:
                _check_extensions(item, ("label",))
                counts.append(self.file(item["label"], mask=True)["foreground"])
        return counts

    def save(self) -> None:
        """Save what was read to the cache (a failure to write it is logged, not raised) and log the counts."""
        try:
            self.cache.save()
        except OSError as e:
            logger.warning(f"could not save the data check record {self.cache.path} ({e}); the next run reads again.")
        logger.info(f"Data check: {self.read} files read, {self.reused} unchanged since they were checked.")


def _check_extensions(item: dict, keys: Sequence[str]) -> None:
    for key in keys:
        if key in item and extension(item[key]) not in PIL_EXTENSIONS:
            raise DatasetError(
                f"{item[key]}: the bundle reads {', '.join(PIL_EXTENSIONS)} files; convert other formats "
                "(DICOM, NIfTI, ...) with `nerveseg prepare`."
            )


def check_item(item: dict, checker: DataChecker | None = None) -> int | None:
    """Check that an item's image (and mask, if any) can be read, match in size, and that the mask is binary.

    Files are read as the training pipeline's PIL reader will read them. A binary mask holds 0 and at most one
    other value (1 or 255, say); class and instance maps must be converted first (``nerveseg prepare``) so that
    the target class is chosen explicitly. A lossy (JPEG) mask needs a checker with a ``mask_threshold``.

    Args:
        item: ``{"image": path}``, with ``"label": path`` for a labelled item.
        checker: whose records to trust and add to, and its ``mask_threshold``; by default every file is read and
            masks must be binary.

    Returns:
        the mask's foreground pixel count, or ``None`` for an item without mask.

    Raises:
        DatasetError: naming the file and the problem.
    """
    return (checker if checker is not None else DataChecker()).item(item)
