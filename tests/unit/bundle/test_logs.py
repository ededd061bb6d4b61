"""Run logs: the log file, and the bundle's own message as the last line of an uncaught error."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
from ignite.engine import Engine
from monai.handlers import StatsHandler

from nerveseg.bundle import logs
from nerveseg.bundle.data.io import DatasetError
from nerveseg.bundle.handlers import TracebackLog
from nerveseg.utils.errors import UserInputError, find_user_error


def _wrapped(error: Exception) -> RuntimeError:
    """``error`` as MONAI re-raises it from a component it failed to instantiate."""
    try:
        try:
            raise error
        except Exception as cause:
            raise RuntimeError("Failed to instantiate component 'build_datalist'") from cause
    except RuntimeError as outer:
        return outer


def test_find_user_error_walks_causes_and_contexts():
    bad = DatasetError("/data/1_1_mask.tif: has values [0, 1, 2]")
    assert find_user_error(_wrapped(bad)) is bad
    try:
        try:
            raise UserInputError("splits must name some of ['training']")
        except UserInputError:
            raise KeyError("while handling")  # noqa: B904 - an implicit __context__ is what is tested
    except KeyError as error:
        assert str(find_user_error(error)).startswith("splits")
    assert find_user_error(_wrapped(OSError("disk full"))) is None


@pytest.fixture
def hook(monkeypatch, tmp_path):
    """:func:`logs.report_errors` over a stand-in for Python's own hook; a run log in ``tmp_path``."""
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, traceback: print("TRACEBACK", file=sys.stderr))
    run_log = logs.RunLog(tmp_path / "train.log").open()
    logs.report_errors()
    yield sys.excepthook
    run_log.close()


def test_last_line_is_the_bundle_message(hook, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(logs.TRACEBACK_SWITCH, raising=False)
    error = _wrapped(DatasetError("no data set: set dataset_dir or datalist_file"))
    hook(type(error), error, error.__traceback__)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [
        f"Stopped: the traceback is in {tmp_path / 'train.log'}; NERVESEG_TRACEBACK=1 prints it here.",
        "DatasetError: no data set: set dataset_dir or datalist_file",
    ]
    log = (tmp_path / "train.log").read_text()
    assert "DatasetError: no data set" in log and "RuntimeError: Failed to instantiate" in log  # the traceback too
    logs.report_errors()
    assert sys.excepthook is hook  # installed once


def test_the_switch_prints_the_traceback_above_the_message(hook, capsys, monkeypatch):
    monkeypatch.setenv(logs.TRACEBACK_SWITCH, "1")
    error = _wrapped(DatasetError("no data set: set dataset_dir or datalist_file"))
    hook(type(error), error, error.__traceback__)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["TRACEBACK", "DatasetError: no data set: set dataset_dir or datalist_file"]
    unwrapped = DatasetError("no data set")
    hook(type(unwrapped), unwrapped, None)
    assert capsys.readouterr().err.strip() == "TRACEBACK"  # the traceback's own last line is the message: not twice


def test_other_errors_end_as_before(hook, capsys, monkeypatch):
    monkeypatch.delenv(logs.TRACEBACK_SWITCH, raising=False)
    error = _wrapped(OSError("disk full"))
    hook(type(error), error, error.__traceback__)
    assert capsys.readouterr().err.strip() == "TRACEBACK"


def test_a_run_log_copies_records_from_open_to_close_and_gives_the_level_back(tmp_path):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.WARNING)
    run_log = logs.RunLog(tmp_path / "run" / "train.log")
    assert run_log.open() is run_log and run_log.open().handler in root.handlers  # opening twice: one handler
    assert [h for h in root.handlers if h not in handlers] == [run_log.handler]
    logging.getLogger("nerveseg.test").info("while open")
    run_log.close()
    run_log.close()
    logging.getLogger("nerveseg.test").warning("after close")
    assert root.handlers == handlers and root.level == logging.WARNING
    text = (tmp_path / "run" / "train.log").read_text()
    assert "nerveseg.test - INFO - while open" in text and "after close" not in text
    root.setLevel(level)


def _tracebacks_logged(caplog, error: Exception, *handlers) -> list[logging.LogRecord]:
    """The records with a traceback that an engine stopped by ``error`` logs, with ``handlers`` attached in order."""

    def step(engine, batch):
        raise error

    engine = Engine(step)
    for handler in handlers:
        handler.attach(engine)
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(type(error)):
        engine.run([0])
    return [r for r in caplog.records if r.exc_info]


def test_an_engine_logs_the_traceback_of_its_error_unless_it_is_the_users(caplog):
    bad, other = DatasetError("/data/1_mask.tif: empty"), OSError("disk full")
    stats = StatsHandler(name=None, iteration_log=False)
    assert _tracebacks_logged(caplog, bad, TracebackLog(), stats) == []  # StatsHandler's own handler is not reached
    assert len(_tracebacks_logged(caplog, bad, stats)) > 0
    expected = [r.getMessage() for r in _tracebacks_logged(caplog, other, StatsHandler(name=None))]
    logged = _tracebacks_logged(caplog, other, TracebackLog(), StatsHandler(name=None))
    assert [r.getMessage() for r in logged] == expected and all(r.exc_info[1] is other for r in logged)


def test_the_unused_gpu_decoder_notices_are_hidden_and_other_warnings_are_not(caplog, monkeypatch):
    from monai.transforms import LoadImage
    from monai.transforms.io.array import SUPPORTED_READERS

    if "nvimgcodecpydicomreader" not in SUPPORTED_READERS:
        pytest.skip("this MONAI has no nvImageCodec DICOM reader")
    decoder_log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    monkeypatch.setattr(decoder_log, "level", logging.NOTSET)  # as in a new process; restored after the test
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        LoadImage()
        if not [r for r in caplog.records if "nvImageCodec" in r.getMessage()]:
            pytest.skip("MONAI gives no nvImageCodec notice here (the decoder is installed)")
        assert [w for w in caught if "nvImageCodec" in str(w.message)]
        caplog.clear()
        caught.clear()
        logs.quiet_unused_gpu_decoder()
        LoadImage()
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert not [r for r in caplog.records if "nvImageCodec" in r.getMessage()]
    assert [str(w.message) for w in caught] == ["another warning"]
