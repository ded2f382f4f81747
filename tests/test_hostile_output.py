"""Hostile text in a report (a saved report from another machine, a board's ONNX file name) shows as
text in every view: no terminal sequence, rich markup, Markdown structure, LaTeX command, extra CSV
record or spreadsheet formula can come out of it."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from dataclasses import replace

import pytest

from flopsbench.escaping import csv_text, latex_text, markdown_text, plain_text
from flopsbench.exporters import export_table, note_lines, render
from flopsbench.report import Report, Row
from flopsbench.spec import Shape, Workload
from tests.conftest import conv_table1_row, error_row, make_report

HOSTILE = {
    "osc-title": "\x1b]0;pwned\x07",
    "osc52-clipboard": "\x1b]52;c;ZXZpbA==\x07",
    "csi-clear": "\x1b[2J",
    "c1-csi-clear": "\x9b2J",
    "carriage-return": "ok\rspoofed",
    "bidi-override": "abc\u202edcba",
    "rich-link": "[link=https://evil]x[/link]",
    "rich-style": "[bold red]x",
    "md-table": "a|b\\|c",
    "md-lines": "x\n# heading\n- item\n\n| a | b |",
    "md-link-html": "[click](https://evil) ![i](https://evil/i.png) <img src=x> <https://evil>",
    "latex-write18": "\n\\immediate\\write18{touch pwned}",
    "latex-input-cr": "\r\\input{pwned-marker}",
    "latex-input-lsep": "x\u2028\\input{pwned-marker}",
    "latex-specials": "100% _#$&~^{}\\ ^^J\\input{pwned-marker}",
    "latex-optional-arg": "[3pt]",
    "latex-caret-notation": "^^5cinput{pwned-marker}",
    "csv-formula": "=HYPERLINK(\"https://evil\",\"x\")",
    "csv-quoting": "a,b\"c\nd",
    "lone-surrogate": "x\ud800y",
}
CASES = pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())


def hostile_report(text: str, device: str = "cpu") -> Report:
    """``text`` in every string a view shows: environment, command, workload names, options,
    shape, status, error, warnings, notes, op names, breakdown parts and types."""
    timed = conv_table1_row()
    timed.workload = replace(timed.workload, name=text, params=timed.workload.params + (("evil", text),))
    timed.warnings, timed.notes = [text], [text]
    timed.unsupported_ops, timed.zero_flop_ops = {text: 1}, {text: 2}
    failed = error_row()
    failed.workload = replace(failed.workload, shape=Shape(text, 8, 8))
    failed.status, failed.error = text, text
    model = Row(Workload(text, Shape(3, 32, 32), 1, (), kind="model", weights=f"{text}.pth"), flops=3_000_000,
                breakdown=[{"part": text, "type": text, "flops": 1_000_000, "memory_bytes": 1_000, "median_s": None}])
    report = make_report([timed, failed, model])
    report.command = text
    report.execution = replace(report.execution, device=device, runtime_options=(("mode", text),))
    report.environment.update(cpu_model=text, hostname=text, gpu_name=text, libraries={"torch": text})
    return report


DEVICES = pytest.mark.parametrize("device", ["cpu", "cuda"])


# --- the rich table ------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own styles: the only escape sequences a view may send
# no OSC (title, clipboard, hyperlink), no CSI, no BEL, no bidirectional reordering
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def controls(out: str) -> list[str]:
    """The control characters a terminal view sent beyond rich's own styles (SGR): none is allowed."""
    return CONTROL.findall(SGR.sub("", out))


@CASES
@DEVICES
@pytest.mark.parametrize("terminal", [False, True])
def test_table_sends_no_control_sequence_and_no_markup(text, device, terminal):
    stream = Terminal() if terminal else io.StringIO()
    export_table(hostile_report(text, device), stream)
    out = stream.getvalue()
    assert controls(out) == []
    if text.startswith("[") and "\n" not in text:  # markup shows as the text it is (the table may wrap it)
        assert re.sub(r"\s", "", text) in re.sub(r"[\s│┃]", "", out)


# --- Markdown --------------------------------------------------------------------------------------------

def _unescaped_pipes(line: str) -> int:
    """Cell boundaries as GitHub (and markdown-it) split a table row: a '|' after a '\\' is text."""
    return len(re.findall(r"(?<!\\)\|", line))


def cell_counts(lines: list[str]) -> set[int]:
    """The cell boundaries of each Markdown table row among ``lines``: one count when every row has
    the header's cells."""
    return {_unescaped_pipes(line) for line in lines if line.startswith("|")}


def markdown_tokens(md: str) -> list:
    """A real Markdown parser's tokens of ``md``, asserting it found no heading, link, image, HTML,
    rule or code block: report text must never become Markdown structure."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(md)
    kinds = {token.type for token in tokens} | {child.type for token in tokens for child in token.children or []}
    assert not kinds & {"heading_open", "link_open", "image", "html_inline", "html_block", "hr", "code_block"}
    return tokens


@CASES
@DEVICES
def test_markdown_keeps_its_structure(text, device):
    report = hostile_report(text, device)
    md = render(report, "md")
    tables = re.split(r"\n(?!\|)", md)  # each table: a run of lines starting with '|'
    for table in (t for t in tables if t.startswith("|")):
        assert len(cell_counts(table.splitlines())) == 1, table
    tokens = markdown_tokens(md)
    assert sum(token.type == "table_open" for token in tokens) == 2  # the rows' and the breakdown's
    assert sum(token.type == "list_item_open" for token in tokens) == len(note_lines(report))
    assert markdown_text(text) in md  # shown, escaped, not dropped


# --- LaTeX -----------------------------------------------------------------------------------------------

def _commands(tex: str) -> set[str]:
    """The control sequences TeX would execute: lines end at any line break, '%' starts a comment."""
    found = set()
    for line in tex.splitlines():  # TeX Live ends lines at \n and \r; the rest must not matter either
        for match in re.finditer(r"\\([A-Za-z]+|.)|%", line):
            if match.group() == "%":
                break
            found.add(match.group(1))
    return found


GENERATED = {"begin", "end", "toprule", "midrule", "bottomrule", "\\",  # the tabular
             "textbackslash", "textasciicircum", "textasciitilde", "textless", "textgreater", "textbar",
             "{", "}", "$", "&", "#", "_", "%"}  # escapes


@CASES
@DEVICES
def test_latex_executes_nothing_from_the_report(text, device):
    tex = render(hostile_report(text, device), "latex")
    assert _commands(tex) <= GENERATED
    assert "^^" not in "".join(line.split("%")[0] for line in tex.splitlines() if not line.startswith("%"))
    for line in tex.splitlines():
        assert line.startswith("% ") or not line.lstrip(" ").startswith(("[", "*")), line
    # each note is one comment line; the tabulars start on their own
    assert tex.count("\\begin{tabular}") == 2
    assert all(not line or line.startswith(("% ", "\\")) or " & " in line for line in tex.splitlines())


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_with_hostile_text_compiles(tmp_path):
    """Typesets with booktabs alone: an injected \\input of the missing marker file would stop it, an
    injected \\write18 would be logged."""
    names = [name for name in HOSTILE if name.startswith(("latex-", "md-", "rich-", "osc", "c1-", "csv-"))]
    for i, name in enumerate(names):
        (tmp_path / f"t{i}.tex").write_text(render(hostile_report(HOSTILE[name]), "latex"), encoding="utf-8")
    body = "".join(f"\\input{{t{i}.tex}}\\par\n" for i in range(len(names)))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\tiny\n"
                                      f"{body}\\end{{document}}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                             "doc.tex"], cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "runsystem" not in (tmp_path / "doc.log").read_text(errors="replace")  # no \\write18 was tried


# --- CSV and JSON ----------------------------------------------------------------------------------------

@CASES
def test_csv_has_one_line_per_row_and_no_formula(text):
    report = hostile_report(text)
    out = render(report, "csv")
    assert len(out.splitlines()) == 1 + len(report.rows)  # line-based tools see one record a line
    records = list(csv.DictReader(io.StringIO(out)))
    assert len(records) == len(report.rows)
    shown = [records[0]["Operator"], records[2]["Model"], records[1]["Status"], records[1]["Error"]]
    assert shown == [csv_text(text)] * 4
    for cell in (cell for record in records for cell in record.values()):
        assert not cell.lstrip(" ").startswith(("=", "+", "-", "@")) and cell == plain_text(cell)


def test_csv_keeps_commas_and_quotes():
    out = render(hostile_report('a,b"c'), "csv")
    assert list(csv.DictReader(io.StringIO(out)))[0]["Operator"] == 'a,b"c'


@CASES
def test_json_keeps_the_text_exactly_and_sends_no_control_character(text):
    report = hostile_report(text)
    out = render(report, "json")
    assert out.isascii() and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out)
    assert json.loads(out)["rows"][0]["workload"]["name"] == text


# --- the escapes themselves --------------------------------------------------------------------------------

@pytest.mark.parametrize("escape", [plain_text, markdown_text, latex_text, csv_text])
def test_ordinary_text_is_unchanged(escape):
    ordinary = "conv ratio=0.5 96x56x56 Test CPU @ 3.00GHz, host-1 (torch 2.4.1+cpu); 'ideal' × 2: x/y"
    assert escape(ordinary) == ordinary


def test_escapes_by_hand():
    assert plain_text("a\r\nb\tc\x1b[2Jd\x9b") == "a b c\\x1b[2Jd\\x9b"
    assert markdown_text("a|b\\|[x](y)<z>") == "a\\|b\\\\\\|\\[x\\](y)\\<z\\>"
    assert latex_text("50% a_b {x} \\y ~^$&#") == ("50\\% a\\_b \\{x\\} \\textbackslash{}y "
                                                   "\\textasciitilde{}\\textasciicircum{}\\$\\&\\#")
    assert latex_text("[1ex] x") == "{}[1ex] x" and latex_text("*") == "{}*"
    assert [csv_text(t) for t in ("=1+1", "-2", " @x", "a=1")] == ["'=1+1", "'-2", "' @x", "a=1"]
