"""Atomic result files."""

from __future__ import annotations

from nerveseg.bundle.files import write_text_atomically


def test_write_replaces_whole_files_and_leaves_no_partial(tmp_path):
    path = write_text_atomically(tmp_path / "out" / "table.md", "first\n")
    write_text_atomically(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.md"]
