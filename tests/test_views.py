"""Tables that fit and notes a person reads (issue 13): the terminal's default columns fit 100
columns without cutting a number, piped tables are never cut, Markdown and LaTeX take the paper's
columns and names, -o FILE takes its view from the extension, warnings are one line per cause
(the full text with -v, in CSV and in the JSON), and a busy pinned core is said before timing.

Rendered from the committed reports of real runs in results/."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

import flopsbench.cli.ops
from flopsbench.exporters import _fmt, export_table, render
from flopsbench.report import Report
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

RESULTS = Path(__file__).parent.parent / "results"
OPS = RESULTS / "ops-cpu-torch-vm-20261128T010205Z.json"  # drift and outliers in 7 of 20 rows
NOISY_OPS = RESULTS / "ops-cpu-torch-vm-20261128T083007Z.json"  # drift and noise in nearly every row
MODELS = RESULTS / "model-cpu-torch-vm-20261128T011249Z.json"  # long names, errors, ops counted as 0
TABLE3 = RESULTS / "model-cpu-torch-vm-20261128T102329.044099Z-29621.json"  # 35 models, swin_tiny_patch4_window7_224
SGR = re.compile(r"\x1b\[[0-9;]*m")


def _report(path: Path) -> Report:
    return Report.from_dict(json.loads(path.read_text()))


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _on_terminal(report: Report, monkeypatch, columns: int = 100, **options) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = FakeTty()
    export_table(report, stream, **options)
    return SGR.sub("", stream.getvalue())


def _whole(value: str, text: str) -> bool:
    """``value`` appears in ``text`` as it is, not as part of a longer number."""
    return re.search(rf"(?<![\d.,]){re.escape(value)}(?!\d|[.,]\d)", text) is not None


def _table_lines(text: str) -> str:
    """The lines of a table's rows and headers (not the notes, whose report text may hold a '…')."""
    return "\n".join(line for line in text.splitlines() if "│" in line or "┃" in line)


def _timed(report: Report):
    return [row for row in report.rows if row.stats]


# --- tables that fit ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, paper", [(OPS, False), (OPS, True), (NOISY_OPS, False), (MODELS, False),
                                         (TABLE3, True)],
                         ids=["ops", "ops-paper", "noisy-ops", "models", "table3-paper-long-names"])
def test_default_table_fits_100_columns_and_cuts_no_number(monkeypatch, path, paper):
    report = _report(path)
    text = _on_terminal(report, monkeypatch, paper=paper)
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= 100, max(widths)
    assert "…" not in _table_lines(text)
    for row in _timed(report):
        median_ms, flops_g = row.stats.median_s * 1e3, row.flops / row.stats.median_s / 1e9  # the batch's FLOPs
        assert _whole(_fmt(median_ms), text), (row.workload.name, _fmt(median_ms))
        assert _whole(_fmt(flops_g), text), (row.workload.name, _fmt(flops_g))
        assert _whole(_fmt(row.stats.ci_low_s * 1e3), text) and _whole(_fmt(row.stats.ci_high_s * 1e3), text)


def test_default_terminal_columns_are_those_a_reader_needs_first(monkeypatch):
    header = "".join(_on_terminal(_report(OPS), monkeypatch, columns=200).splitlines()[1:3])
    for name in ("Operator", "Shape", "FLOPs [M]", "Mem ideal [MB]", "Median [ms]", "FLOPS [G/s]", "Status"):
        assert name in header, name
    for name in ("Layers", "Batch", "Runs", "IQR [ms]", "Throughput [1/s]", "Intensity"):
        assert name not in header, name


def test_wide_shows_every_column_and_a_pipe_cuts_nothing():
    from flopsbench.columns import View

    report = _report(MODELS)
    text = render(report, "table", paper=True, view=View(wide=True))  # not a terminal: as wide as the table
    for name in ("Runs", "IQR [ms]", "Batch", "Throughput [1/s]", "Mem impl [MB]", "Paper params [M]"):
        assert name in text, name
    assert "…" not in _table_lines(text)
    for row in _timed(report):
        assert _whole(_fmt(row.stats.median_s * 1e3), text)
        assert _whole(_fmt(row.stats.iqr_s * 1e3), text)


def test_a_piped_table_keeps_each_interval_on_its_line():
    """Piped (not a terminal), the table is as wide as it needs: '1.49 [1.49, 1.50]' is never wrapped."""
    text = render(_report(MODELS), "table", paper=True)
    ratios = re.findall(r"\d[\d.,]* \[[\d.,]+, [\d.,]+\]", text)
    assert len(ratios) >= 2 * len(_timed(_report(MODELS)))  # the median's and the ratio's, whole


def test_narrow_terminal_overflows_rather_than_cutting(monkeypatch):
    text = _on_terminal(_report(OPS), monkeypatch, columns=40)
    assert "…" not in _table_lines(text)
    for row in _timed(_report(OPS)):
        assert _whole(_fmt(row.stats.median_s * 1e3), text)


def test_columns_choose_exactly_and_an_unknown_name_lists_the_valid_ones(monkeypatch):
    from flopsbench.columns import COLUMNS, View

    text = render(_report(OPS), "md", view=View(columns=("flops", "runs")))
    header = text.splitlines()[2]
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["Operator", "FLOPs [M]", "Runs"]
    seen = []
    monkeypatch.setattr(flopsbench.cli.ops, "run_and_report", lambda settings, workloads: seen.append(settings))
    result = invoke(["ops", "--op", "pwconv", "--columns", "flops,nonsense"])
    _assert_one_line_error(result, "--columns")
    assert all(name in stderr_lines(result)[0] for name in COLUMNS)
    _assert_one_line_error(invoke(["ops", "--op", "pwconv", "--columns", "ratio"]), "--columns")  # needs --paper
    assert invoke(["ops", "--op", "pwconv", "--columns", "time,ci,runs", "-v"]).exit_code == 0
    assert seen[0].view == View(columns=("time", "ci", "runs"), verbose=True)


# --- paper-ready views ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["md", "latex"])
def test_paper_views_take_the_papers_columns_and_names(fmt):
    models, ops = render(_report(MODELS), fmt, paper=True), render(_report(OPS), fmt)
    assert "FasterNet-T0" in models and "fasternet_t0" not in models and "fasternet\\_t0" not in models
    assert "PConv 3x3 (ours, r=1/4)" in ops and "Conv 3x3" in ops
    table = [line for line in (models + ops).splitlines() if not line.startswith(("%", "-"))]
    for name in ("Runs", "Status", "Layers", "Batch", "IQR"):
        assert not any(name in line for line in table), name
    for name in ("Params [M]", "FLOPs [G]", "Median [ms]", "FLOPS [G/s]", "Latency / paper"):
        assert name in models, name
    for name in ("FLOPs [M]", "Mem ideal [MB]", "Median [ms]", "FLOPS [G/s]"):
        assert name in ops, name
    header = next(line for line in models.splitlines() if "Params" in line and not line.startswith("%"))
    assert header.count("|" if fmt == "md" else "&") <= 10  # 9 columns, where 17 were


def test_csv_keeps_every_column_and_the_warnings_text():
    rows = list(csv.DictReader(io.StringIO(render(_report(OPS), "csv"))))
    warned = next(row for row in rows if row["Status"] == "warn")
    assert warned["Warnings"].startswith("drift: the medians of the 4 timing rounds span")
    assert {"Runs", "IQR [ms]", "Layers", "Batch", "Median [ms] CI low", "Median [ms] CI high"} <= set(rows[0])


# --- -o FILE: the view its extension names ----------------------------------------------------------------

@pytest.mark.parametrize("name, looks_like", [("out.csv", "Operator,"), ("out.md", "flopsbench ops on cpu"),
                                              ("out.tex", "% flopsbench ops"), ("out.json", "{"),
                                              ("out.txt", "flopsbench ops on cpu")])
def test_output_view_comes_from_the_extension(tmp_path, name, looks_like):
    out = tmp_path / name
    result = invoke(["report", OPS, "-o", out])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(looks_like)
    if name == "out.csv":
        assert len(list(csv.DictReader(out.open()))) == 20
    if name == "out.txt":
        assert "┃" in out.read_text()


def test_format_says_otherwise_and_an_unknown_extension_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    assert invoke(["report", OPS, "--format", "md", "-o", out]).exit_code == 0
    assert out.read_text().startswith("flopsbench ops")
    result = invoke(["report", OPS, "-o", tmp_path / "out.xml"])
    _assert_one_line_error(result, "--output")
    assert "--format" in stderr_lines(result)[0] and not (tmp_path / "out.xml").exists()
    seen = []
    monkeypatch.setattr(flopsbench.cli.ops, "run_and_report", lambda settings, workloads: seen.append(settings))
    assert invoke(["ops", "--op", "pwconv", "-o", tmp_path / "ops.csv"]).exit_code == 0
    assert seen[0].fmt == "csv"
    for command in (["compare", OPS, OPS], ["claims", OPS]):
        _assert_one_line_error(invoke([*command, "-o", tmp_path / "x.xml"]), "--output")


# --- warnings a person reads ------------------------------------------------------------------------------

def _affected(report: Report) -> int:
    return sum(bool(row.warnings or row.error) for row in report.rows)


def _notes_in_markdown(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("- ")]


@pytest.mark.parametrize("path", [OPS, NOISY_OPS, MODELS], ids=["ops", "noisy-ops", "models"])
def test_at_most_one_warning_line_per_affected_row(path, monkeypatch):
    report = _report(path)
    assert len(_notes_in_markdown(render(report, "md"))) <= _affected(report)
    lines = _on_terminal(report, monkeypatch).splitlines()
    under_table = lines[max(i for i, line in enumerate(lines) if "│" in line) + 1:]
    warned = [line for line in under_table if line.startswith(("drift", "noisy", "outliers"))]
    assert 1 <= len(warned) <= 3  # a line per cause


def test_notes_group_by_cause_with_the_range_and_the_remedy_once(monkeypatch):
    text = render(_report(OPS), "md")
    drift = [line for line in _notes_in_markdown(text) if "drift" in line]
    assert len(drift) == 1, drift
    assert drift[0].startswith("- drift: 5 of 20 rows (Conv 3x3 384x14x14, 768x7x7; GConv 3x3 (16 groups) 384x14x14")
    terminal = re.sub(r"\s+", " ", _on_terminal(_report(OPS), monkeypatch))  # the registry's names, as typed
    assert "drift: 5 of 20 rows (conv 384x14x14, 768x7x7; gconv 384x14x14, 768x7x7; dwconv 384x14x14)" in terminal
    assert "5–9 %" in drift[0] and drift[0].count("--min-time") == 1
    outliers = [line for line in _notes_in_markdown(text) if line.startswith("- outliers")]
    assert len(outliers) == 1 and "13–15 %" in outliers[0]
    noisy = render(_report(NOISY_OPS), "md")
    assert sum(line.startswith("- noisy: ") for line in noisy.splitlines()) == 1


def test_status_names_the_cause(monkeypatch):
    text = _on_terminal(_report(OPS), monkeypatch)
    assert re.search(r"conv +│ 384x14x14 .*│ drift", text)
    assert re.search(r"dwconv +│ 768x7x7 .*│ outliers", text)


def test_verbose_gives_each_rows_warnings_in_full():
    from flopsbench.columns import View
    from flopsbench.exporters import warning_lines

    report = _report(NOISY_OPS)
    verbose = _notes_in_markdown(render(report, "md", view=View(verbose=True)))
    assert [line[2:] for line in verbose] == warning_lines(report, lambda value: str(value))
    assert len(verbose) > _affected(report)
    data = json.loads(render(report, "json"))  # the JSON keeps every row's warnings as they were
    assert [row["warnings"] for row in data["rows"]] == [row.warnings for row in report.rows]


def test_model_notes_list_the_ops_counted_as_zero_once():
    lines = _notes_in_markdown(render(_report(MODELS), "md"))
    unsupported = [line for line in lines if "no FLOP formula" in line]
    assert len(unsupported) == 1 and "aten::gelu" in unsupported[0] and "29 of 35 rows" in unsupported[0]


# --- a busy pinned core --------------------------------------------------------------------------------

STAT = """cpu  {total}
cpu0 {u0} 0 0 {i0} 0 0 0 0 0 0
cpu1 {u1} 0 0 {i1} 0 0 0 0 0 0
intr 1 2 3
"""


def _stat(tmp_path: Path, name: str, u0: int, i0: int, u1: int, i1: int) -> Path:
    path = tmp_path / name
    path.write_text(STAT.format(total="0 " * 10, u0=u0, i0=i0, u1=u1, i1=i1))
    return path


def test_a_busy_pinned_core_is_said_once_with_an_idle_one_to_use(tmp_path):
    from flopsbench import busy

    before = _stat(tmp_path, "before", u0=1000, i0=5000, u1=800, i1=9000)
    after = _stat(tmp_path, "after", u0=1017, i0=5003, u1=800, i1=9020)  # core 0: 17 of 20 ticks busy
    files = iter([before, after])
    loads = busy.core_loads(0.2, read=lambda: busy.read_counters(next(files)), sleep=lambda s: None)
    assert loads == {0: pytest.approx(0.85), 1: 0.0}
    record = busy.pinned_core_load((0,), loads, allowed=[0, 1])
    line = busy.warning(record)
    assert line == "core 0 was 85 % busy before timing (another process); idle cores then: 1 — pass --cores 1"
    assert busy.warning(busy.pinned_core_load((1,), loads, allowed=[0, 1])) is None
    for hostile in (None, "x", {"load": []}, {"load": {"0": "85"}, "busy": [0]}, {"load": {"0": 2}, "busy": [0]}):
        assert busy.warning(hostile) is None
    assert busy.read_counters(tmp_path / "missing") == {}

    report = _report(OPS)
    report.environment["pinned_core_load"] = record
    notes = _notes_in_markdown(render(report, "md"))
    assert sum(line == f"- {line[2:]}" and "busy before timing" in line for line in notes) == 1
    assert all("busy before timing" not in "".join(row.warnings) for row in report.rows)


def test_the_check_runs_before_timing_and_is_kept_in_the_report(monkeypatch):
    from flopsbench import busy
    from flopsbench.cli.options import check_pinned_cores
    from rich.console import Console

    monkeypatch.setattr(busy, "core_loads", lambda: {0: 0.9, 1: 0.01})
    report, stderr = _report(OPS), io.StringIO()
    check_pinned_cores(report, Console(file=stderr, width=200))
    assert report.environment["pinned_core_load"]["busy"] == [0]
    assert stderr.getvalue().startswith("warning: core 0 was 90 % busy before timing")


def test_every_column_of_the_frame_has_a_name_for_columns():
    """A header renamed in exporters.frame without its --columns name would drop out of every view."""
    from flopsbench.columns import ALWAYS, COLUMNS, TEXT_ONLY, name_of
    from flopsbench.exporters import frame

    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("schema") != "flopsbench.report":
            continue
        for paper in (False, True):
            for header in frame(Report.from_dict(data), paper).columns:
                assert header in TEXT_ONLY or name_of(header) in (*COLUMNS, *ALWAYS), (path.name, header)


def test_a_batch_above_one_shows_its_throughput():
    from dataclasses import replace

    report = _report(OPS)
    report = replace(report, execution=replace(report.execution, batch=32))
    header = render(report, "md").splitlines()[2]
    assert "Throughput [1/s]" in header and header.index("Median [ms]") < header.index("Throughput [1/s]")


def test_every_view_with_intervals_says_what_they_leave_out(hand_report):
    """The brackets after a median resample the run's rounds: the notes say so, and that the next
    run's median fell inside it for 312 of 563 rows (benchmarks/interval_coverage.py)."""
    from flopsbench.exporters import INTERVAL_NOTE
    from flopsbench.merge import merge
    from flopsbench.merged_views import render as render_merged

    assert "timing rounds" in INTERVAL_NOTE and "312 of 563 rows" in INTERVAL_NOTE
    merged = merge([("a.json", hand_report)])
    for view in (render(hand_report, "md"), render(hand_report, "latex"), render(hand_report, "table"),
                 render_merged(merged, "md"), render_merged(merged, "latex")):
        assert INTERVAL_NOTE.split(":")[0] in " ".join(view.split())
