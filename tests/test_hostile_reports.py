"""Hostile input: saved reports for `flopsbench report`, ONNX metadata and seeds for the board
runner, `--seed` for ops. Each is refused with one line naming the file or option and the fix,
exit status 2, no traceback; nothing in a file is trusted to have the type it should."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import onnx
import pytest

import flopsbench.board as board
from flopsbench.cli import options
from flopsbench.onnx_export import EMBEDDED_COUNTS, read_metadata
from flopsbench.paper import DEVICE_COLUMNS
from flopsbench.report import Report, Row
from tests.test_board import ROOT, pw_onnx  # noqa: F401 -- pw_onnx is a fixture
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

class _Delete:
    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()  # as a value in an edit: the key is removed


def _edited(data, path: str, value):
    """``data`` with the item at ``path`` ('rows.0.samples_s.3') set to ``value`` (DELETE: removed)."""
    data = copy.deepcopy(data)
    *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
    target = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def report_dict(hand_report) -> dict:
    return json.loads(hand_report.to_json())


def _report_error(tmp_path, text: str, *args) -> str:
    """The one line `flopsbench report` prints for a file holding ``text``."""
    path = tmp_path / "report.json"
    path.write_text(text)
    result = invoke(["report", path, *args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and str(path) in line, line
    return line


# (path, hostile value, what the error line says: the JSON path of the item at fault)
EDITS = [
    ("rows.0.samples_s.3", "0.033", "rows[0].samples_s[3]"),
    ("rows.0.samples_s.0", -0.5, "rows[0].samples_s[0]"),
    ("rows.0.samples_s.0", True, "rows[0].samples_s[0]"),
    ("rows.0.samples_s.0", 5e-324, "rows[0].samples_s[0]"),  # FLOPs / this overflows to inf
    ("rows.0.samples_s", "0.03", "rows[0].samples_s"),
    ("rows.0.flops", "2601123840", "rows[0].flops"),
    ("rows.0.flops", 2601123840.0, "rows[0].flops"),
    ("rows.0.flops", -1, "rows[0].flops"),
    ("rows.0.flops", 10 ** 400, "rows[0].flops"),  # no float can hold it
    ("rows.0.memory_impl.read_bytes", DELETE, "rows[0].memory_impl.read_bytes"),
    ("rows.0.memory_impl", [1, 2], "rows[0].memory_impl"),
    ("rows.0.workload", DELETE, "rows[0].workload"),
    ("rows.0.workload.shape", [96, 56], "rows[0].workload.shape"),
    ("rows.0.workload.shape.1", -56, "rows[0].workload.shape[1]"),
    ("rows.0.workload.shape.1", "56", "rows[0].workload.shape[1]"),
    ("rows.0.workload.params", {"kernel_size": [3, 3]}, "rows[0].workload.params.kernel_size"),
    ("rows.0.workload.kind", "thing", "rows[0].workload.kind"),
    ("rows.0.status", 0, "rows[0].status"),
    ("rows.0.warnings", "noisy", "rows[0].warnings"),
    ("rows.0.flops_by_operator.conv", "many", "rows[0].flops_by_operator.conv"),
    ("rows.0.unsupported_ops", {"evil\nkey": "x"}, "rows[0].unsupported_ops['evil\\nkey']"),  # stays one line
    ("rows.0", "a row", "rows[0]"),
    ("rows", {"0": {}}, "rows"),
    ("execution.batch", 0, "execution.batch"),  # per-image FLOPs divide by it
    ("execution.batch", "1", "execution.batch"),
    ("execution.device", "tpu", "execution.device"),
    ("execution.dtype", "fp64", "execution.dtype"),
    ("execution.cores", "0", "execution.cores"),
    ("execution.budget", DELETE, "execution.budget"),
    ("environment", [], "environment"),
    ("environment.libraries", [], "environment.libraries"),
    ("complete", "yes", "complete"),
    ("argv", "flopsbench ops", "argv"),
    ("environment.deep", json.loads(_nested(200)), "nested"),  # no report nests so deep (json.dumps fails near 1,000)
]


@pytest.mark.parametrize("path, value, says", EDITS, ids=[f"{p}={v!r}"[:60] for p, v, _ in EDITS])
def test_a_hostile_report_is_one_line_naming_the_item(tmp_path, report_dict, path, value, says):
    line = _report_error(tmp_path, json.dumps(_edited(report_dict, path, value)), "--format", "json", "--paper")
    assert says in line and "give a report saved by --save" in line, line


def test_a_breakdown_part_without_its_bytes_is_refused(tmp_path, report_dict):
    part = {"part": "stages.0", "type": "Sequential", "flops": 1, "median_s": None}
    line = _report_error(tmp_path, json.dumps(_edited(report_dict, "rows.0.breakdown", [part])))
    assert "rows[0].breakdown[0].memory_bytes" in line, line


@pytest.mark.parametrize("text, says", [
    (_nested(100_000), "nested"),  # json.loads' RecursionError
    ('{"rows": ' * 50_000 + "1" + "}" * 50_000, "nested"),
    ("[]", "a JSON object"),
    ('"flopsbench.report"', "a JSON object"),
    ("null", "a JSON object"),
    ("\xff\xfe", "not JSON"),
    ("", "not JSON"),
], ids=["deep-lists", "deep-objects", "list", "string", "null", "not-utf8", "empty"])
def test_a_file_that_is_no_report_is_one_line(tmp_path, text, says):
    path = tmp_path / "report.json"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    result = invoke(["report", path])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and says in line, line


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(tmp_path, report_dict, constant):
    text = json.dumps(_edited(report_dict, "rows.0.samples_s.0", 0.5)).replace("0.5", constant, 1)
    line = _report_error(tmp_path, text)
    assert constant in line and "not JSON" in line, line


def test_a_file_beyond_the_size_cap_is_refused_unread(tmp_path, monkeypatch):
    from flopsbench import report

    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(report.MAX_REPORT_BYTES + 1)  # sparse: nothing is written
    result = invoke(["report", path])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = stderr_lines(result)
    assert "'FILE'" in line and "larger than" in line, line


def test_unknown_keys_are_ignored(report_dict, hand_report):
    """Forward compatible: keys a later version adds are read past, at every level."""
    data = _edited(report_dict, "execution.future_knob", 1)
    data = _edited(data, "execution.budget.future_budget", 2)
    data = _edited(data, "rows.0.future_count", 3)
    data = _edited(data, "rows.0.workload.future_field", 4)
    data = _edited(data, "future_top", 5)
    assert Report.from_dict(data).to_dict() == hand_report.to_dict()


def test_a_report_round_trips_through_the_schema(hand_report):
    data = json.loads(hand_report.to_json())
    assert Report.from_dict(data).to_json() == hand_report.to_json()
    assert Row.from_dict(data["rows"][1]).to_dict(batch=1) == data["rows"][1]


def test_row_from_dict_validates_too(report_dict):
    from flopsbench import schema

    with pytest.raises(schema.ReportError, match=r"samples_s\[1\]"):
        Row.from_dict(_edited(report_dict["rows"][0], "samples_s.1", "x"))


def test_the_schema_knows_every_device_the_cli_and_the_paper_know():
    from flopsbench import schema

    assert set(schema.DEVICES) == set(options.DEVICES) == set(DEVICE_COLUMNS)


def test_the_schema_is_published_as_json_schema():
    from flopsbench import schema

    published = schema.json_schema()
    assert published["title"] == "flopsbench report" and "rows" in published["properties"]


# --- the board runner: seed and embedded metadata ----------------------------------------------------

def _board_error(args, capsys) -> str:
    code = board.main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", (code, captured)
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_board_refuses_a_seed_numpy_cannot_take(pw_onnx, capsys, seed):
    line = _board_error([pw_onnx, "--runs", "1", "--seed", seed], capsys)
    assert line.startswith(f"{board.PROG}: error: --seed:") and "0 <= seed < 2**32" in line, line


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_ops_refuses_the_same_seeds(seed):
    args = ["ops", "--op", "pwconv", "--shape", "8x4x4", "--runs", "1", "--rounds", "1", "--warmup", "0"]
    _assert_one_line_error(invoke([*args, "--seed", seed]), "--seed")


def _crafted(source, tmp_path, metadata, name="crafted.onnx") -> str:
    """``source`` with every input and output dimension dynamic and ``metadata`` (a dict, or the
    raw text) embedded in place of the exporter's; returns the path."""
    model = onnx.load(str(source))
    for value in [*model.graph.input, *model.graph.output]:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f"d{index}"
    (entry,) = [p for p in model.metadata_props if p.key == "flopsbench"]
    entry.value = metadata if isinstance(metadata, str) else json.dumps(metadata)
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


# (path in the metadata, hostile value, the field the error names)
METADATA_EDITS = [
    ("batch", 1e6, "batch"),
    ("batch", 2 ** 40, "batch"),
    ("batch", 0, "batch"),
    ("batch", -1, "batch"),
    ("batch", "1", "batch"),
    ("batch", True, "batch"),
    ("batch", DELETE, "batch"),
    ("workload.shape", [8, 4], "workload.shape"),
    ("workload.shape.1", 0, "workload.shape[1]"),
    ("workload.shape.1", -4, "workload.shape[1]"),
    ("workload.shape.1", 2 ** 40, "workload.shape"),
    ("workload.shape.1", 4.0, "workload.shape[1]"),
    ("workload.shape", "8x4x4", "workload.shape"),
    ("workload.name", 7, "workload.name"),
    ("workload.kind", "thing", "workload.kind"),
    ("workload.layers", 0, "workload.layers"),
    ("workload.params", [], "workload.params"),
    ("workload.params.kernel_size", [3, 3], "workload.params.kernel_size"),
    ("workload.fuse_bn", "no", "workload.fuse_bn"),
    ("workload", DELETE, "workload"),
    ("dtype", "fp64", "dtype"),
    ("counts.flops", "1024", "counts.flops"),
    ("counts.flops", -1, "counts.flops"),
    ("counts.flops_by_operator", {"conv": "many"}, "counts.flops_by_operator.conv"),
    ("counts.flops_by_operator", {"a\nb": -1}, "counts.flops_by_operator['a\\nb']"),
    ("counts.memory_impl", {"write_bytes": 1}, "counts.memory_impl.read_bytes"),
    ("counts", [], "counts"),
]


@pytest.mark.parametrize("path, value, field", METADATA_EDITS,
                         ids=[f"{p}={v!r}"[:60] for p, v, _ in METADATA_EDITS])
def test_board_refuses_crafted_metadata_naming_the_field(pw_onnx, tmp_path, capsys, path, value, field):
    model = _crafted(pw_onnx, tmp_path, _edited(read_metadata(pw_onnx), path, value))
    line = _board_error([model, "--runs", "1", "--rounds", "1", "--warmup", "0"], capsys)
    assert line.startswith(f"{board.PROG}: error: MODEL.onnx: crafted.onnx") and f"metadata {field}" in line, line
    assert "re-export" in line, line


@pytest.mark.parametrize("edits, field", [
    ({"batch": 10 ** 6, "workload.shape": [8, 1024, 1024]}, "batch"),  # 32 MiB an image, 32 TiB the batch
    ({"workload.shape": [8, 2 ** 31 - 1, 2 ** 31 - 1]}, "workload.shape"),  # 128 EiB at batch 1
], ids=["batch", "shape"])
def test_board_refuses_metadata_whose_input_exceeds_memory(pw_onnx, tmp_path, capsys, edits, field):
    metadata = read_metadata(pw_onnx)
    for path, value in edits.items():
        metadata = _edited(metadata, path, value)
    line = _board_error([_crafted(pw_onnx, tmp_path, metadata), "--runs", "1"], capsys)
    assert f"crafted.onnx: its flopsbench metadata {field} makes an input" in line and "available" in line, line


@pytest.mark.parametrize("text, says", [
    ("[1]", "not a JSON object"),
    ("{", "not JSON"),
    (_nested(100_000), "nested"),
    ('{"batch": NaN}', "not JSON"),
], ids=["list", "truncated", "deep", "nan"])
def test_board_refuses_metadata_that_is_no_json_object(pw_onnx, tmp_path, capsys, text, says):
    line = _board_error([_crafted(pw_onnx, tmp_path, text), "--runs", "1"], capsys)
    assert "MODEL.onnx: crafted.onnx" in line and says in line, line


def test_board_counts_other_than_the_exported_ones_are_not_copied(pw_onnx, tmp_path, capsys):
    """Only the counts an export embeds reach the row: metadata cannot set its samples or status."""
    metadata = _edited(read_metadata(pw_onnx), "counts.samples_s", [1e-9])
    metadata["counts"]["status"] = "ok"
    metadata["counts"]["error"] = "crafted"
    out = tmp_path / "r.json"
    code = board.main([_crafted(pw_onnx, tmp_path, metadata), "--runs", "2", "--rounds", "1", "--warmup", "0",
                       "-o", str(out)])
    capsys.readouterr()
    (row,) = Report.from_dict(json.loads(out.read_text())).rows
    assert code == 0 and row.error is None and len(row.samples_s) == 2 and 1e-9 not in row.samples_s
    assert row.flops == 1_024


def test_the_board_checks_every_count_an_export_embeds():
    assert set(board.EMBEDDED_COUNT_CHECKS) == set(EMBEDDED_COUNTS)


def test_board_and_worker_import_without_pydantic():
    """They run on boards with only numpy and onnxruntime: the report schema stays on the host."""
    code = "import sys, flopsbench.board, flopsbench.worker; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
