"""Exports of a hand-built report against golden files (UPDATE_GOLDEN=1 regenerates them), plus
hand-checked values so that a regenerated golden file cannot silently bless a wrong number."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from dataclasses import replace

import pytest

from flopsbench.columns import View
from flopsbench.exporters import EXPORTERS, render
from flopsbench.report import SCHEMA_VERSION, Report
from tests.conftest import conv_table1_row, error_row, make_report, pconv_custom_row


@pytest.mark.parametrize("fmt, name", [("csv", "report.csv"), ("md", "report.md"), ("latex", "report.tex"),
                                       ("json", "report.json")])
def test_golden(hand_report, golden, fmt, name):
    golden(name, render(hand_report, fmt))


def test_golden_markdown_with_paper_columns(hand_report, golden):
    golden("report_paper.md", render(hand_report, "md", paper=True))


def test_exporters_share_one_signature(hand_report):
    assert set(EXPORTERS) == {"table", "csv", "md", "latex", "json"}
    for fmt, export in EXPORTERS.items():
        stream = io.StringIO()
        export(hand_report, stream, False)
        assert stream.getvalue() == render(hand_report, fmt)


# --- values checked by hand -----------------------------------------------------------------------

def _csv_rows(report, paper=False):
    return list(csv.DictReader(io.StringIO(render(report, "csv", paper))))


def test_csv_values_by_hand(hand_report):
    conv, pconv = _csv_rows(hand_report)
    assert conv["Operator"] == "conv" and conv["Shape"] == "96x56x56" and conv["Options"] == ""
    assert (conv["Layers"], conv["Batch"], conv["Runs"], conv["Status"]) == ("10", "1", "5", "ok")
    assert float(conv["Params [M]"]) == 0.82944
    assert float(conv["FLOPs [M]"]) == 2601.12384
    assert float(conv["Mem ideal [MB]"]) == 27.40224
    assert float(conv["Mem impl [MB]"]) == 27.40224
    assert float(conv["Intensity [FLOP/B]"]) == pytest.approx(2601123840 / 27402240)
    assert float(conv["Median [ms]"]) == pytest.approx(32.0)     # median of 30..34 ms
    assert float(conv["IQR [ms]"]) == pytest.approx(2.0)         # 33 - 31 ms
    assert float(conv["FLOPS [G/s]"]) == pytest.approx(2.60112384 / 0.032)  # 81.2851 G/s
    assert float(conv["Throughput [1/s]"]) == pytest.approx(31.25)
    assert pconv["Options"] == "ratio=0.5"
    assert pconv["Status"] == "warn"
    assert float(pconv["Median [ms]"]) == pytest.approx(3.0)


def test_csv_paper_columns_by_hand(hand_report):
    conv, pconv = _csv_rows(hand_report, paper=True)
    # Table 1, Conv 3x3 at 96x56x56: CPU 35.67 ms, 72.9 GFLOPS
    assert float(conv["Paper cpu latency [ms]"]) == 35.67
    assert float(conv["Paper cpu FLOPS [G/s]"]) == 72.9
    assert float(conv["FLOPS / paper"]) == pytest.approx(81.28512 / 72.9)
    # non-default ratio: the paper has no such row
    assert pconv["Paper cpu latency [ms]"] == pconv["Paper cpu FLOPS [G/s]"] == pconv["FLOPS / paper"] == ""




def test_latex_escapes_text_and_marks_missing_values():
    """Pastes into a booktabs document as is: '%' and '_' escaped, an error row's missing
    numbers as '--', the notes (the error too) as comments above the tabular."""
    text = render(make_report([conv_table1_row(), error_row()]), "latex", paper=True)
    comments = [line for line in text.splitlines() if line.startswith("%")]
    body = text.split("\\begin{tabular}", 1)[1]
    assert any("error: RuntimeError: boom" in line for line in comments)
    assert "\\toprule" in body and "\\bottomrule" in body and "–" not in body
    gconv = next(line for line in body.splitlines() if line.startswith("GConv 3x3 (16 groups)"))  # the paper's name
    assert gconv.endswith("& -- & -- & -- \\\\")  # paper columns: the paper has no such gconv row
    assert "FLOPS / paper" in body and "%" not in body.replace("\\%", "")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path):
    """The LaTeX view typesets with booktabs alone: an error row's '--', and '_' in text cells."""
    slicing = pconv_custom_row()
    slicing.workload = replace(slicing.workload, params=(("kernel_size", 3), ("ratio", 0.5), ("forward_mode", "slicing")))
    report = make_report([conv_table1_row(), slicing, error_row()])
    text = render(report, "latex", paper=True)
    assert "forward\\_mode=slicing" in text
    (tmp_path / "table.tex").write_text(text)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\tiny\n"
                                      "\\input{table.tex}\n\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]

def test_paper_ratios_only_under_the_papers_protocol(hand_report):
    """The paper's CPU numbers are batch-1 fp32 latencies: a batch-2 or bf16 run shows them, but
    divides by them nowhere, and the Markdown says why."""
    for change in ({"batch": 2}, {"dtype": "bf16"}):
        report = replace(hand_report, execution=replace(hand_report.execution, **change))
        conv, _ = _csv_rows(report, paper=True)
        assert float(conv["Paper cpu FLOPS [G/s]"]) == 72.9 and conv["FLOPS / paper"] == ""
        assert "Paper ratios left out: the paper measured cpu at batch 1, fp32 (IEEE); this run used" in render(report, "md", True)
    assert "Paper ratios left out" not in render(hand_report, "md", True)

def _md_cells(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def test_markdown_values_by_hand(hand_report):
    text = render(hand_report, "md", paper=True, view=View(wide=True))
    cells = _md_cells(text)
    assert cells["Operator"] == ["Conv 3x3", "pconv"]  # the paper's name of a Table 1 row
    assert cells["Layers"] == ["10", "2"]
    assert cells["FLOPs [M]"] == ["2,601", "0.0737"]
    assert cells["Median [ms]"] == ["32.0", "3.00"]
    assert cells["FLOPS [G/s]"] == ["81.3", "0.0246"]
    assert cells["Runs"] == ["5", "5"]
    assert cells["Paper cpu latency [ms]"] == ["35.7", "–"]
    assert cells["Paper cpu FLOPS [G/s]"] == ["72.9", "–"]
    assert cells["FLOPS / paper"] == ["1.12", "–"]
    first = text.splitlines()[0]
    assert "Test CPU @ 3.00GHz" in first and "testhost" in first and "cores [0]" in first
    assert "INCOMPLETE" not in first
    assert "- noisy: 1 of 2 rows (pconv (ratio=0.5)) had an IQR of 67 % of the median" in text
    assert "1 multiply-add = 1 FLOP" in text


def test_options_column_only_when_some_row_has_non_default_options():
    assert "Options" not in render(make_report([conv_table1_row()]), "md")
    assert "Options" in render(make_report([conv_table1_row(), pconv_custom_row()]), "md")


def test_incomplete_report_says_so():
    text = render(make_report([conv_table1_row()], complete=False), "md")
    assert "INCOMPLETE" in text.splitlines()[0]


def test_error_row_is_shown_with_its_reason():
    text = render(make_report([conv_table1_row(), error_row()]), "md", view=View(wide=True))
    cells = _md_cells(text)
    assert cells["Status"] == ["ok", "error"]
    assert cells["FLOPs [M]"][1] == cells["Median [ms]"][1] == "–"
    assert "GConv 3x3 (16 groups) 16x8x8: error: RuntimeError: boom" in text  # the reason, under the table
    rows = _csv_rows(make_report([conv_table1_row(), error_row()]))
    assert rows[1]["Status"] == "error" and rows[1]["Error"] == "RuntimeError: boom"
    assert rows[1]["FLOPs [M]"] == "" and rows[0]["Error"] == ""


def test_runs_stay_integers_beside_an_error_row():
    report = make_report([conv_table1_row(), error_row()])
    assert _md_cells(render(report, "md", view=View(wide=True)))["Runs"] == ["5", "–"]
    assert _csv_rows(report)[0]["Runs"] == "5"


def test_unsupported_ops_are_noted():
    row = conv_table1_row()
    row.unsupported_ops = {"aten::clone": 10}
    text = render(make_report([row]), "md")
    assert "aten::clone" in text


def test_table_view_has_rows_and_notes(hand_report):
    text = render(hand_report, "table")
    assert "conv" in text and "pconv" in text and "96x56x56" in text and "2,601" in text
    assert "1 multiply-add = 1 FLOP" in text


def test_table_view_keeps_units_in_headers(hand_report):
    text = render(hand_report, "table", paper=True, view=View(wide=True))
    # Headers may wrap in the terminal, but '[ms]' must survive rich's markup parser.
    assert "IQR [ms]" in text and text.count("[ms]") >= 3 and "[G/s]" in text


# --- JSON ------------------------------------------------------------------------------------------

def test_json_is_the_complete_record(hand_report):
    data = json.loads(render(hand_report, "json"))
    assert data["schema"] == "flopsbench.report" and data["schema_version"] == SCHEMA_VERSION
    assert data["created_utc"] == "2024-01-02T03:04:05+00:00" and data["complete"] is True
    assert "1 multiply-add = 1 FLOP" in data["flop_convention"]
    conv = data["rows"][0]
    assert conv["samples_s"] == [0.030, 0.031, 0.032, 0.033, 0.034]  # raw, unrounded
    assert conv["stats"]["median_s"] == pytest.approx(0.032)
    assert conv["derived"]["flops_per_s"] == pytest.approx(2601123840 / 0.032)
    assert conv["derived"]["throughput_per_s"] == pytest.approx(1 / 0.032)
    assert conv["memory_impl_bytes"] == 27_402_240
    assert conv["workload"] == {"kind": "operator", "name": "conv", "shape": [96, 56, 56], "layers": 10,
                                "params": {"kernel_size": 3}, "weights": None, "fuse_bn": False}
    assert data["execution"]["cores"] == [0] and data["execution"]["budget"]["exact_runs"] == 5


@pytest.mark.parametrize("fmt", ["csv", "md", "json", "table"])
@pytest.mark.parametrize("paper", [False, True])
def test_json_round_trip_renders_identically(hand_report, fmt, paper):
    hand_report.rows.append(error_row())
    again = Report.from_dict(json.loads(hand_report.to_json()))
    assert render(again, fmt, paper) == render(hand_report, fmt, paper)
    assert again.to_json() == hand_report.to_json()


def test_from_dict_rejects_other_schemas(hand_report):
    data = json.loads(hand_report.to_json())
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValueError):
        Report.from_dict(data)
