"""`flopsbench report FILE...`: reports of several devices, runtimes and machines merged into the
paper's layouts (flopsbench.merge, flopsbench.merged_views): rows by workload identity, a column
group per protocol and machine, duplicates pooled, golden outputs, hostile text, the CLI.

Reports are built in memory (tests.conftest) with hand-picked samples; the counts are worked out
by hand in each row's docstring; the board reports are the real ones under results/."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from flopsbench.escaping import csv_text, markdown_text, plain_text
from flopsbench.exporters import render as render_single
from flopsbench.merge import MergeError, merge
from flopsbench.merged_views import VIEWS, Layout, frame, render
from flopsbench.report import Report, Row
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from tests.conftest import ENVIRONMENT, conv_table1_row
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines
from tests.test_hostile_output import CASES, GENERATED, Terminal, _commands, cell_counts, controls, markdown_tokens

RESULTS = Path(__file__).parent.parent / "results"
EMULATED = "emulated (qemu): no timing meaning"
PCONV = (("kernel_size", 3), ("ratio", 0.25), ("forward_mode", "split_cat"))
T0 = (("ratio", 0.25), ("forward_mode", "split_cat"), ("act", "gelu"), ("num_classes", 1000), ("seed", None))


def conv(samples: list[float], batch: int = 1, shape: Shape = Shape(96, 56, 56), layers: int = 10) -> Row:
    """conv_table1_row's counts (worked out there), its FLOPs and ideal memory for ``batch`` images:
    ideal = 10·(b·56·56·2·96 + 9·96·96) elements."""
    row = conv_table1_row()
    row.workload = replace(row.workload, shape=shape, layers=layers)
    row.flops = row.flops_analytic = 2_601_123_840 * batch
    row.memory_ideal_bytes = 4 * 10 * (batch * 56 * 56 * 2 * 96 + 9 * 96 * 96)
    row.samples_s = samples
    return row


def pconv(samples: list[float]) -> Row:
    """PConv 3x3, r = 1/4, ×10 at 96x56x56: c_p = 24, FLOPs = 10·56·56·9·24·24 = 162,570,240;
    params = 10·9·24·24 = 51,840; ideal = 10·(56·56·2·24 + 9·24·24) = 1,557,120 elements =
    6,228,480 B; impl per layer: the conv reads (24·3136 + 9·576)·4 and writes 24·3136·4, cat reads
    and writes 96·3136·4: 10·(1,526,016 + 1,505,280) = 30,312,960 B."""
    return Row(workload=Workload("pconv", Shape(96, 56, 56), 10, PCONV), params=51_840, flops=162_570_240,
               flops_analytic=162_570_240, memory_ideal_elements=1_557_120, memory_ideal_bytes=6_228_480,
               memory_impl={"read_bytes": 15_260_160, "write_bytes": 15_052_800}, samples_s=samples)


def fasternet_t0(samples: list[float]) -> Row:
    """FasterNet-T0 at 224x224, BN fused (the counts the board report of results/ carries)."""
    return Row(workload=Workload("fasternet_t0", Shape(3, 224, 224), 1, T0, kind="model", fuse_bn=True),
               params=3_905_500, flops=335_438_400, flops_unfused=338_041_280, flops_fused=335_438_400,
               samples_s=samples)


def report(rows: list[Row], device: str = "cpu", runtime: str = "torch", batch: int = 1, threads: int = 1,
           dtype: str = "fp32", command: str = "ops", created: str = "2024-01-02T03:04:05+00:00",
           options: tuple = (), **environment) -> Report:
    execution = Execution(device=device, runtime=runtime, runtime_options=options, dtype=dtype, batch=batch,
                          threads=threads, cores=(0,), budget=TimingBudget(exact_runs=5), seed=0)
    return Report(command=command, execution=execution, environment={**ENVIRONMENT, **environment},
                  argv=["flopsbench", command], rows=rows, complete=True, created_utc=created,
                  finished_utc=created, tool_version="0.1.0")


ORT = (("opt_level", "all"), ("spinning", True))
GPU = (("cudnn_benchmark", True), ("cuda_graph", False), ("l2_flush", False), ("channels_last", False),
       ("find_max_batch", False), ("mode", "throughput"), ("tf32", False))


def golden_reports() -> list[tuple[str, Report]]:
    """Every kind of column: two runs of one protocol on one machine (pooled), another runtime, a
    GPU at batch 32 (throughput), a labelled board, a model report; an error, a warning."""
    noisy = pconv([0.0060, 0.0070, 0.0090, 0.0061, 0.0062])
    noisy.warnings = ["noisy: IQR is 30% of the median"]
    failed = Row(workload=Workload("gconv", Shape(96, 56, 56), 10, (("kernel_size", 3), ("groups", 16))),
                 status="error", error="RuntimeError: boom")
    return [
        ("runs/cpu-torch-1.json", report([conv([0.048, 0.049, 0.050]), noisy])),
        ("runs/cpu-torch-2.json", report([conv([0.047, 0.051])], created="2024-01-03T00:00:00+00:00")),
        ("runs/cpu-ort.json", report([pconv([0.0058, 0.0059]), conv([0.0447, 0.0450]), failed],
                                     runtime="onnxruntime", options=ORT, libraries={"onnxruntime": "1.32.0"})),
        ("runs/gpu.json", report([conv([0.010, 0.011, 0.012], batch=32)], device="cuda", batch=32, options=GPU,
                                 gpu_name="NVIDIA Test GPU")),
        ("runs/board-pconv.json", report([pconv([4.1, 4.0, 4.2])], device="arm", runtime="onnxruntime",
                                         options=ORT, cpu_model="Cortex-A72", hostname="pi")),
        ("runs/model-cpu.json", report([fasternet_t0([0.0137, 0.0138])], command="model")),
        ("runs/model-board.json", report([fasternet_t0([4.7, 4.8])], device="arm", runtime="onnxruntime",
                                         options=ORT, command="model", cpu_model="Cortex-A72", hostname="pi")),
    ]


def golden_merged():
    return merge(golden_reports(), {"runs/board-pconv.json": EMULATED, "runs/model-board.json": EMULATED})


def _cell(merged, name: str, title: str):
    row = next(row for row in merged.rows if row.workload.name == name)
    column = next(column for column in merged.columns if column.title == title)
    return row.cells.get(column.key)


# --- merging --------------------------------------------------------------------------------------------------

def test_columns_per_protocol_and_machine_in_the_papers_device_order():
    merged = golden_merged()
    assert [c.title for c in merged.columns] == ["cuda torch", "cpu torch", "cpu onnxruntime",
                                                 f"arm onnxruntime ({EMULATED})"]
    assert [c.title for c in merged.columns_of("model")] == ["cpu torch", f"arm onnxruntime ({EMULATED})"]
    assert [len(c.sources) for c in merged.columns] == [1, 3, 1, 2]  # ops and model reports of one protocol share
    assert [(r.workload.kind, r.workload.name) for r in merged.rows] == [
        ("operator", "conv"), ("operator", "gconv"), ("operator", "pconv"), ("model", "fasternet_t0")]


def test_rows_match_by_workload_never_by_position():
    a = report([conv([0.040]), pconv([0.005])])
    b = report([pconv([0.003]), conv([0.030], shape=Shape(768, 7, 7)), conv([0.020])], runtime="onnxruntime",
               options=ORT)
    merged = merge([("a", a), ("b", b)])
    medians = {(row.workload.name, str(row.workload.shape)): [cell.stats.median_s for cell in row.cells.values()]
               for row in merged.rows}
    assert medians == {("conv", "96x56x56"): [0.040, 0.020], ("conv", "768x7x7"): [0.030],
                       ("pconv", "96x56x56"): [0.005, 0.003]}


def test_duplicate_runs_are_pooled_and_the_notes_say_so():
    merged = golden_merged()
    cell = _cell(merged, "conv", "cpu torch")
    assert cell.pooled and sorted(cell.samples_s) == [0.047, 0.048, 0.049, 0.050, 0.051]
    assert cell.stats.median_s == 0.049  # of all five samples, not of either run
    assert any(note.startswith("'cpu torch': 2 runs of conv 96x56x56 pooled: the median of all their samples")
               for note in merged.notes), merged.notes


@pytest.mark.parametrize("change, titles", [
    (dict(batch=8), ["cpu torch b1", "cpu torch b8"]),
    (dict(threads=4), ["cpu torch t1", "cpu torch t4"]),
    (dict(dtype="bf16"), ["cpu torch fp32", "cpu torch bf16"]),
    (dict(options=(("channels_last", True),)), ["cpu torch", "cpu torch channels_last=True"]),
    (dict(cpu_model="Other CPU"), ["cpu torch Test CPU @ 3.00GHz", "cpu torch Other CPU"]),
    (dict(hostname="otherhost"), ["cpu torch host testhost", "cpu torch host otherhost"]),
])
def test_runs_of_other_protocols_or_machines_are_never_pooled_but_labelled(change, titles):
    merged = merge([("a", report([conv([0.040])])), ("b", report([conv([0.030], batch=change.get("batch", 1))],
                                                                      **change))])
    assert [column.title for column in merged.columns] == titles
    (row,) = merged.rows
    assert [cell.stats.median_s for cell in row.cells.values()] == [0.040, 0.030]
    assert not any("pooled" in note for note in merged.notes)


def test_a_label_marks_its_column_and_stands_for_the_machine():
    """Two emulated runs whose CPU names differ (older runners named it otherwise) share one group."""
    a = report([pconv([4.0])], device="arm", runtime="onnxruntime", options=ORT, cpu_model="ARMv8 Processor rev 3")
    b = report([pconv([4.2])], device="arm", runtime="onnxruntime", options=ORT, cpu_model="Cortex-A72")
    assert len(merge([("a", a), ("b", b)]).columns) == 2
    (column,) = merge([("a", a), ("b", b)], {"a": EMULATED, "b": EMULATED}).columns
    assert column.title == f"arm onnxruntime ({EMULATED})" and len(column.sources) == 2


def test_an_operator_at_another_layer_count_is_another_row():
    merged = merge([("a", report([conv([0.040])])), ("b", report([conv([0.004], layers=1)], runtime="onnxruntime",
                                                                 options=ORT))])
    assert [row.workload.layers for row in merged.rows] == [10, 1]
    assert "conv 96x56x56 is stacked 10 and 1 layers deep in different sources" in merged.notes[0]
    assert ("", "Layers") in frame(merged, "operator").columns


def test_counts_are_shown_once_and_a_disagreement_is_noted():
    other = conv([0.030])
    other.params = 1
    merged = merge([("a", report([conv([0.040])])), ("b", report([other], runtime="onnxruntime", options=ORT))])
    assert merged.rows[0].counts.params == 829_440
    assert "conv 96x56x56: the sources count different params: 829440 in a, 1 in b; shown: a's" in merged.notes


def test_flops_per_image_and_memory_of_the_smallest_batch():
    merged = golden_merged()
    counts = merged.rows[0].counts
    assert counts.flops == 2_601_123_840 and counts.memory_batch == 1
    assert counts.memory_ideal_bytes == 27_402_240  # batch 1's, not the GPU's batch of 32


def test_failures_and_warnings_are_noted():
    notes = golden_merged().notes
    assert "'cpu onnxruntime': gconv 96x56x56 in runs/cpu-ort.json: error: RuntimeError: boom" in notes
    assert any(note.startswith("'cpu torch': measurement warnings (noise, drift or outliers) on pconv 96x56x56")
               for note in notes)


def test_the_same_report_twice_is_refused():
    same = report([conv([0.040])])
    with pytest.raises(MergeError, match="a and b hold the same report"):
        merge([("a", same), ("b", Report.from_dict(json.loads(same.to_json())))])


def test_board_reports_of_results_merge_with_cpu_reports():
    """The committed emulated board runs beside a CPU report: pconv 96x56x56 has both cells, the two
    pwconv board runs (same protocol, same label) are pooled."""
    from flopsbench.cli.report_cmd import load_report

    boards = ["board-arm64-qemu-pconv-96x56x56.json", "board-arm64-qemu-workers-pwconv-96x56x56.json",
              "board-arm64-qemu-cpu-identity-pwconv-96x56x56.json"]
    loaded = [(name, load_report(RESULTS / name)) for name in boards]
    cpu = report([pconv([0.007]), conv([0.048])])
    merged = merge([("cpu.json", cpu), *loaded], {name: EMULATED for name in boards})
    assert [c.title for c in merged.columns] == ["cpu torch", f"arm onnxruntime ({EMULATED})"]
    arm = merged.columns[1].key
    cells = {row.workload.name: row.cells for row in merged.rows}
    assert cells["pconv"][arm].stats.median_s == loaded[0][1].rows[0].stats.median_s
    assert len(cells["pconv"]) == 2 and arm not in cells["conv"]
    assert cells["pwconv"][arm].samples_s == loaded[1][1].rows[0].samples_s + loaded[2][1].rows[0].samples_s


# --- views ----------------------------------------------------------------------------------------------------

PAPER_LAYOUT = Layout(paper_names=True)  # what md and latex show by default


@pytest.mark.parametrize("fmt, name, layout", [
    ("md", "merged.md", PAPER_LAYOUT), ("latex", "merged.tex", PAPER_LAYOUT), ("csv", "merged.csv", Layout()),
    ("json", "merged.json", Layout()), ("table", "merged.txt", Layout()),
])
def test_golden(golden, fmt, name, layout):
    golden(name, render(golden_merged(), fmt, layout))


def test_golden_values_by_hand():
    """What the golden files hold, apart from them: latency in ms, throughput = 32 / median,
    FLOPS = the batch's FLOPs / median."""
    records = list(csv.DictReader(io.StringIO(render(golden_merged(), "csv"))))
    conv_row = records[0]
    assert conv_row["Table"] == "operator" and conv_row["Operator"] == "conv"
    assert float(conv_row["FLOPs [M]"]) == pytest.approx(2601.12384)
    assert float(conv_row["Mem ideal [MB]"]) == pytest.approx(27.40224)
    assert float(conv_row["cpu torch: Latency [ms]"]) == pytest.approx(49.0)
    assert float(conv_row["cpu torch: FLOPS [G/s]"]) == pytest.approx(2.60112384 / 0.049)
    assert float(conv_row["cuda torch: Throughput [img/s]"]) == pytest.approx(32 / 0.011)
    assert float(conv_row["cuda torch: FLOPS [G/s]"]) == pytest.approx(32 * 2.60112384 / 0.011)
    assert conv_row[f"arm onnxruntime ({EMULATED}): Latency [ms]"] == ""
    model = records[-1]
    assert model["Table"] == "model" and float(model["FLOPs [G]"]) == pytest.approx(0.33804128)
    assert float(model[f"arm onnxruntime ({EMULATED}): Latency [ms]"]) == pytest.approx(4750)


def test_paper_names_and_the_papers_columns():
    md = render(golden_merged(), "md", Layout(paper_names=True, paper=True))
    assert "| Conv 3x3 " in md and "| PConv 3x3 (ours, r=1/4) " in md and "| FasterNet-T0 " in md
    df = frame(golden_merged(), "operator", Layout(paper=True))
    assert df[("paper cpu", "Latency [ms]")].tolist() == [35.67, 21.9, 5.46]  # Table 1, whether timed here or not
    assert df[("paper cuda", "Throughput [img/s]")].tolist()[0] == 3010
    assert "'paper cpu': the FasterNet paper's published latency and FLOPS (Tables 1 and 3) on Intel i9-9900X" in md


def test_columns_choose_what_is_shown():
    merged = golden_merged()
    df = frame(merged, "operator", Layout(columns=("flops", "time", "ci", "runs")))
    assert list(df.columns[:5]) == [("", "Operator"), ("", "Shape"), ("", "FLOPs [M]"),
                                    ("cuda torch", "Throughput [img/s]"), ("cuda torch", "Throughput [img/s] CI low")]
    assert ("cpu torch", "Runs") in df.columns and ("cpu torch", "FLOPS [G/s]") not in df.columns
    assert df[("cpu torch", "Runs")].tolist()[0] == 5
    assert list(frame(merged, "model", Layout(columns=("time",))).columns) == [
        ("", "Model"), ("cpu torch", "Latency [ms]"), (f"arm onnxruntime ({EMULATED})", "Latency [ms]")]


def test_latex_is_a_booktabs_tabular_with_a_group_per_device():
    tex = render(golden_merged(), "latex", PAPER_LAYOUT)
    assert "\\multicolumn{2}{c}{cuda torch}" in tex and "\\cmidrule(lr){5-6}" in tex
    assert f"\\multicolumn{{2}}{{c}}{{arm onnxruntime ({EMULATED})}}" in tex
    assert "PConv 3x3 (ours, r=1/4) & 96x56x56 &" in tex


def test_notes_name_every_source_with_its_machine_and_date():
    md = render(golden_merged(), "md", Layout())
    assert ("- runs/gpu.json: 'cuda torch'; ops report made 2024-01-02T03:04:05+00:00 on NVIDIA Test GPU, host "
            "testhost; flopsbench 0.1.0, commit 0123456") in md
    assert f"- runs/board-pconv.json: 'arm onnxruntime ({EMULATED})'; ops report made" in md


def test_views_share_one_signature_and_empty_merges_render():
    merged = golden_merged()
    for fmt, export in VIEWS.items():
        stream = io.StringIO()
        export(merged, stream, Layout())
        assert stream.getvalue() == render(merged, fmt)
        assert render(merge([("empty", report([]))]), fmt)


# --- hostile text ---------------------------------------------------------------------------------------------

def _hostile(text: str):
    """``text`` as the label, host, CPU name, an option's value, a workload's name and its error."""
    failed = Row(workload=Workload(text, Shape(16, 8, 8), 2, (("evil", text),)), status="error", error=text)
    a = report([conv([0.040]), failed], cpu_model=text, hostname=text, options=(("mode", text),))
    b = report([conv([0.030])], runtime="onnxruntime", options=ORT)
    return merge([(text, a), ("b", b)], {text: text})


@CASES
def test_table_sends_no_control_sequence(text):
    stream = Terminal()
    VIEWS["table"](_hostile(text), stream, Layout())
    assert controls(stream.getvalue()) == []


@CASES
def test_markdown_keeps_its_structure(text):
    md = render(_hostile(text), "md", PAPER_LAYOUT)
    assert len(cell_counts(md.splitlines())) == 1, md
    markdown_tokens(md)
    assert markdown_text(text) in md


@CASES
def test_latex_executes_nothing_from_the_reports(text):
    tex = render(_hostile(text), "latex", PAPER_LAYOUT)
    assert _commands(tex) <= GENERATED | {"multicolumn", "cmidrule"}
    assert all(not line or line.startswith(("% ", "\\")) or " & " in line for line in tex.splitlines())


@CASES
def test_csv_has_one_line_per_row_and_no_formula(text):
    out = render(_hostile(text), "csv")
    records = list(csv.DictReader(io.StringIO(out)))
    assert len(out.splitlines()) == 1 + len(records) == 3
    assert records[1]["Operator"] == csv_text(text)
    for cell in (cell for record in records for cell in [*record.values(), *record.keys()]):
        assert not cell.lstrip(" ").startswith(("=", "+", "@")) and cell == plain_text(cell)


@CASES
def test_json_keeps_the_text_exactly(text):
    out = render(_hostile(text), "json")
    data = json.loads(out)
    assert out.isascii() and data["sources"][0]["label"] == text and data["rows"][1]["workload"]["name"] == text


# --- the command ------------------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """The golden reports as files in tmp_path/runs/, by their names; cwd is tmp_path."""
    paths = []
    for name, one in golden_reports():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(one.to_json())
        paths.append(name)
    return paths


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


LABELS = ["--label", f"runs/board-*={EMULATED}", "--label", f"runs/model-board.json={EMULATED}"]


@pytest.mark.parametrize("fmt, layout", [("md", PAPER_LAYOUT), ("latex", PAPER_LAYOUT), ("csv", Layout()),
                                         ("json", Layout()), ("table", Layout())])
def test_report_merges_several_files(in_tmp, saved, fmt, layout):
    """Before issue 12 this was "Got unexpected extra argument(s)"."""
    result = invoke(["report", *saved, *LABELS, "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.stdout == render(golden_merged(), fmt, layout)


def test_one_file_is_todays_single_view(in_tmp, saved):
    result = invoke(["report", saved[0], "--format", "md"])
    assert result.exit_code == 0 and result.stdout == render_single(golden_reports()[0][1], "md")


def test_columns_or_paper_names_give_one_file_the_merged_layout(in_tmp, saved):
    result = invoke(["report", saved[0], "--columns", "time", "--no-paper-names", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Operator,Shape,cpu torch: Latency [ms]"


def test_merged_view_to_a_file(in_tmp, saved):
    result = invoke(["report", *saved, *LABELS, "--paper", "--columns", "flops,time", "--format", "latex",
                     "-o", "table1.tex"])
    assert result.exit_code == 0, result.output
    assert (in_tmp / "table1.tex").read_text() == render(golden_merged(), "latex",
                                                         Layout(("flops", "time"), paper_names=True, paper=True))


@pytest.mark.parametrize("args, option", [
    (["--columns", "time,speed"], "--columns"),
    (["--columns", ""], "--columns"),
    (["--label", "nothing-matches.json=x"], "--label"),
    (["--label", "runs/gpu.json"], "--label"),
    (["--label", "runs/gpu.json="], "--label"),
    (["--label", "runs/gpu.json=a", "--label", "runs/*=b"], "--label"),
    (["--ceilings", "c.json"], "--ceilings"),
])
def test_bad_merge_options_are_one_line(in_tmp, saved, args, option):
    _assert_one_line_error(invoke(["report", *saved, *args]), option)


def test_the_same_file_twice_is_one_line(in_tmp, saved):
    result = invoke(["report", saved[0], saved[0]])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and "hold the same report" in line, line


def test_a_bad_file_among_several_is_named(in_tmp, saved):
    (in_tmp / "bad.json").write_text("[]")
    result = invoke(["report", *saved, "bad.json"])
    assert result.exit_code == 2
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and "bad.json" in line, line


def test_results_table1_is_the_committed_merge(monkeypatch):
    """results/table1-merged.{md,tex,csv} are what the command in results/README.md renders now."""
    monkeypatch.chdir(RESULTS.parent)
    readme = (RESULTS / "README.md").read_text()
    command = re.search(r"^flopsbench report (results/ops-cpu-torch.*?) --format md -o results/table1-merged\.md$",
                        readme, re.MULTILINE | re.DOTALL)
    assert command, "results/README.md lists the command that made table1-merged.md"
    args = shlex.split(command[1].replace("\\\n", " "))
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
        result = invoke(["report", *args, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.stdout == (RESULTS / f"table1-merged.{suffix}").read_text(), suffix
    assert f"arm onnxruntime ({EMULATED})" in result.stdout
