"""`flopsbench report FILE`: a saved report rendered again, identical to rendering it when measured."""

from __future__ import annotations

import pytest

from flopsbench.exporters import render
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines


@pytest.fixture
def saved(hand_report, tmp_path):
    path = tmp_path / "ops.json"
    path.write_text(hand_report.to_json())
    return path


@pytest.mark.parametrize("fmt", ["md", "latex", "csv", "json"])
def test_renders_a_saved_report_as_when_it_was_measured(hand_report, saved, fmt):
    result = invoke(["report", saved, "--format", fmt, "--paper"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render(hand_report, fmt, paper=True)


def test_writes_the_view_to_a_file(hand_report, saved, tmp_path):
    out = tmp_path / "table.tex"
    assert invoke(["report", saved, "--format", "latex", "-o", out]).exit_code == 0
    assert out.read_text() == render(hand_report, "latex")


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"),
    ("| not | json |", "is not JSON"),
    ('{"schema": "something.else"}', "is not a flopsbench report this version reads"),
    ('{"schema": "flopsbench.report", "schema_version": 1}', "is not a flopsbench report this version reads"),
])
def test_a_file_that_is_not_a_report_is_one_line(tmp_path, content, says):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    result = invoke(["report", path])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and says in line, line


def test_bad_options_are_one_line(saved):
    _assert_one_line_error(invoke(["report", saved, "--format", "pdf"]), "--format")
    _assert_one_line_error(invoke(["report", saved, "-o", "/nonexistent/dir/x.md"]), "--output")
