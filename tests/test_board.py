"""The torch-free board runner (``python -m flopsbench.board``) and ``flopsbench export``.

The runner is proven torch-free in a subprocess whose import system refuses torch and fvcore
(and the other torch-side libraries). Exports are tiny: 1 pwconv layer at 8x4x4 (hand counts
below), FasterNet-T0 at 64x64 with 10 classes."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flopsbench.board as board
import flopsbench_zoo
from flopsbench.cli import export as export_cli
from flopsbench.onnx_export import EMBEDDED_COUNTS, export, export_metadata, read_metadata
from flopsbench.report import Report, Row
from flopsbench.backends import BACKENDS
from flopsbench.build import build_case
from flopsbench.runner import count_case
from flopsbench.spec import Execution, Shape, Workload
from tests.fakes import interrupting_ort
from tests.test_baselines import UNAVAILABLE_EXAMPLE, with_unavailable_model
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--runs", "4", "--rounds", "2", "--warmup", "0"]
BLOCKED = ("torch", "fvcore", "onnx", "timm", "torchvision", "typer", "rich", "pandas")
DEVICE = "arm" if platform.machine().lower() in ("aarch64", "arm64") else "cpu"

# 1 pwconv layer at 8x4x4, batch 1, fp32, by hand: FLOPs = 16 pixels · 8 · 8 = 1,024; params 64;
# ideal memory h·w·2c + c² = 256 + 64 = 320 elements = 1,280 B; impl: read (128 + 64)·4, write 128·4.
PWCONV = {"flops": 1_024, "params": 64, "memory_ideal_elements": 320, "memory_ideal_bytes": 1_280}
PWCONV_IMPL_BYTES = 1_280


def _pwconv_workload() -> Workload:
    return Workload("pwconv", Shape(8, 4, 4), 1, tuple(flopsbench_zoo.get_operator("pwconv").defaults.items()))


@pytest.fixture(scope="module")
def pw_onnx(tmp_path_factory) -> Path:
    """1-layer pwconv at 8x4x4, counted and exported with its metadata, as the exporter does."""
    execution = Execution(runtime="onnxruntime")
    row = Row(_pwconv_workload())
    module, x = build_case(row.workload, execution)
    module = count_case(row, module, x, execution)
    return export(module, x, tmp_path_factory.mktemp("onnx") / "pw.onnx", export_metadata(row, execution))


@pytest.fixture(scope="module")
def bare_onnx(tmp_path_factory) -> Path:
    """The same kind of graph with no flopsbench metadata."""
    module = torch.nn.Conv2d(8, 8, 1, bias=False).eval()
    return export(module, torch.zeros(1, 8, 4, 4), tmp_path_factory.mktemp("onnx") / "bare.onnx", None)


def _board(args, capsys) -> tuple[int, str, str]:
    code = board.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- torch-free ------------------------------------------------------------------------------------

PRELUDE = """
import atexit, importlib.abc, runpy, sys
BLOCKED = {blocked!r}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on this board (blocked by the test)")
        return None

sys.meta_path.insert(0, Refuse())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the import blocker does not work")
sys.argv = ["flopsbench.board", *{args!r}]
# at exit, however it ends (the worker ends without the interpreter's teardown, after the exit handlers)
atexit.register(lambda: print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)),
                              file=sys.stderr))
runpy.run_module("flopsbench.board", run_name="__main__", alter_sys=True)
"""


def test_board_runs_where_torch_cannot_be_imported(pw_onnx, tmp_path):
    out = tmp_path / "board.json"
    args = [str(pw_onnx), *FAST, "-o", str(out)]
    result = subprocess.run([sys.executable, "-c", PRELUDE.format(blocked=BLOCKED, args=args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED=\n" in result.stderr or result.stderr.rstrip().endswith("LOADED="), result.stderr
    report = Report.from_dict(json.loads(out.read_text()))
    (row,) = report.rows
    assert {k: getattr(row, k) for k in PWCONV} == PWCONV and row.memory_impl_bytes == PWCONV_IMPL_BYTES
    assert report.command == "ops" and report.complete
    assert report.execution.runtime == "onnxruntime" and report.execution.device == DEVICE
    assert "torch_intra_op_threads_default" not in report.environment
    assert row.status == "ok" and len(row.samples_s) == 4 and row.round_sizes == [2, 2]


def test_board_report_round_trips_with_the_embedded_counts(pw_onnx, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, stderr = _board([pw_onnx, *FAST, "--threads", "1", "--cores", "0", "-o", out], capsys)
    assert code == 0 and stdout == ""
    data = json.loads(out.read_text())
    report = Report.from_dict(data)
    assert Report.from_dict(json.loads(report.to_json())).to_dict() == report.to_dict()
    (row,) = report.rows
    assert row.workload == _pwconv_workload()
    assert {k: getattr(row, k) for k in PWCONV} == PWCONV and row.flops_analytic == PWCONV["flops"]
    assert data["rows"][0]["derived"]["flops_per_s"] == pytest.approx(1_024 / row.stats.median_s)
    assert report.execution.cores == (0,) and report.execution.batch == 1 and report.execution.dtype == "fp32"
    assert report.execution.runtime_options == (("opt_level", "all"), ("spinning", True))
    assert row.runtime["onnx_file"] == "pw.onnx" and row.runtime["embedded_metadata"] is True
    assert row.runtime["intra_op_num_threads"] == 1 and row.runtime["runner"] == "flopsbench.board"
    assert row.affinity["all_within_cores"] and row.warmup_runs >= 3
    assert report.environment["machine"] == platform.machine()
    assert "median" in stderr and f"wrote {out}" in stderr


def test_board_writes_json_to_stdout_by_default(pw_onnx, capsys):
    code, stdout, _ = _board([pw_onnx, "--runs", "1", "--rounds", "1", "--warmup", "0"], capsys)
    assert code == 0 and json.loads(stdout)["schema"] == "flopsbench.report"


def test_onnx_without_metadata_is_timed_with_a_warning(bare_onnx, tmp_path, capsys):
    out = tmp_path / "bare.json"
    code, _, stderr = _board([bare_onnx, *FAST, "-o", out], capsys)
    assert code == 0
    report = Report.from_dict(json.loads(out.read_text()))
    (row,) = report.rows
    assert row.status == "ok" and len(row.samples_s) == 4
    assert row.flops is None and row.params is None and row.memory_impl is None
    assert row.workload.name == "bare" and row.workload.shape == Shape(8, 4, 4) and report.execution.batch == 1
    assert any("no flopsbench metadata" in w for w in row.warnings)
    assert "warning: bare.onnx: it has no flopsbench metadata" in stderr


def test_interrupt_keeps_the_samples_taken(pw_onnx, tmp_path, capsys, monkeypatch):
    """Ctrl-C at round 2's second sample (--runs 4 over 2 rounds; each round warms up with 3
    calls): round 1's two samples and round 2's first are kept."""
    backend, hook = interrupting_ort(at=3 + 2 + 3 + 2)
    monkeypatch.setitem(BACKENDS, (board.device_name(), "onnxruntime"), backend)
    out = tmp_path / "partial.json"
    code, _, stderr = _board([pw_onnx, *FAST, "-o", out], capsys)
    report = Report.from_dict(json.loads(out.read_text()))
    assert code == 130 and not report.complete and report.rows[0].round_sizes == [2, 1]
    assert "incomplete" in stderr


@pytest.mark.parametrize("args, option", [
    ("--cores 99", "--cores"),
    ("--cores 1-0", "--cores"),
    ("--threads 0", "--threads"),
    ("--runs 0", "--runs"),
    ("--min-runs 5 --max-runs 2", "--max-runs"),
    ("--rounds 0", "--rounds"),
    ("--warmup -1", "--warmup"),
    ("--ort-opt-level max", "--ort-opt-level"),
    ("--no-such-option", "--no-such-option"),
    ("-o /proc/no/such/dir/r.json", "--output"),
])
def test_board_user_errors_are_one_line(pw_onnx, capsys, args, option):
    try:
        code = board.main([str(pw_onnx), *args.split()])
    except SystemExit as exc:  # argparse's own errors (unknown option, invalid choice)
        code = exc.code
    err = capsys.readouterr()
    assert code == 2 and err.out == ""
    lines = [line for line in err.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert re.findall(r"(?<![\w-])--[a-z][a-z-]*", lines[0])[0] == option, lines[0]


@pytest.mark.parametrize("make", ["missing", "not-onnx"])
def test_board_bad_model_file_is_one_line(tmp_path, capsys, make):
    path = tmp_path / "model.onnx"
    if make == "not-onnx":
        path.write_text("not an onnx file\n")
    code = board.main([str(path), "--runs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "MODEL.onnx" in err


@pytest.mark.parametrize("machine, device", [("aarch64", "arm"), ("arm64", "arm"), ("x86_64", "cpu")])
def test_device_is_arm_only_on_arm_hosts(machine, device):
    assert board.device_name(machine) == device


# --- flopsbench export -----------------------------------------------------------------------------

def test_export_operator_embeds_the_counts(tmp_path):
    out = tmp_path / "sub" / "pw.onnx"
    result = invoke(["export", "pwconv", "--shape", "8x4x4", "--layers", "1", "-o", out])
    assert result.exit_code == 0, result.output
    (line,) = stderr_lines(result)
    assert str(out) in line and "FLOPs 1.02 k" in line and "max abs diff" in line and result.stdout == ""
    meta = read_metadata(out)
    assert Workload.from_dict(meta["workload"]) == _pwconv_workload()
    assert set(meta["counts"]) == set(EMBEDDED_COUNTS)
    assert {k: meta["counts"][k] for k in PWCONV} == PWCONV and meta["memory_impl_bytes"] == PWCONV_IMPL_BYTES
    assert (meta["batch"], meta["dtype"]) == (1, "fp32") and meta["exported_with"]["torch"] == torch.__version__


def test_export_model_then_board(tmp_path, capsys):
    out = tmp_path / "t0.onnx"
    result = invoke(["export", "fasternet_t0", "--resolution", "64", "--num-classes", "10", "--batch", "2",
                     "-o", out])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["workload"]["kind"] == "model" and meta["workload"]["fuse_bn"] is True
    assert meta["workload"]["shape"] == [3, 64, 64] and meta["batch"] == 2
    counts = meta["counts"]
    assert counts["flops"] == counts["flops_fused"] < counts["flops_unfused"]
    assert counts["params_without_bn"] < counts["params"]
    code, _, _ = _board([out, "--runs", "2", "--rounds", "1", "--warmup", "0", "-o", tmp_path / "t0.json"], capsys)
    report = Report.from_dict(json.loads((tmp_path / "t0.json").read_text()))
    assert code == 0 and report.command == "model" and report.execution.batch == 2
    assert report.rows[0].flops_unfused == counts["flops_unfused"]
    assert report.rows[0].workload.param_dict["num_classes"] == 10


@pytest.mark.parametrize("args, option", [
    ("--shape 8x4 -o {tmp}/x.onnx", "--shape"),
    ("--layers 0 -o {tmp}/x.onnx", "--layers"),
    ("--groups 2 -o {tmp}/x.onnx", "--groups"),
    ("--resolution 64 -o {tmp}/x.onnx", "--resolution"),
    ("--no-fuse-bn -o {tmp}/x.onnx", "--fuse-bn"),
    ("--batch 0 -o {tmp}/x.onnx", "--batch"),
    ("--ratio 2 -o {tmp}/x.onnx", "--ratio"),
    ("-o /proc/no/such/dir/x.onnx", "--output"),
    ("-o -", "--output"),
    ("-o {tmp}", "--output"),
])
def test_export_operator_errors_are_one_line(tmp_path, args, option):
    _assert_one_line_error(invoke(["export", "pwconv", *args.format(tmp=tmp_path).split()]), option)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("args, option", [
    ("--layers 2", "--layers"),
    ("--shape 8x4x4", "--shape"),
    ("--act swish", "--act"),
])
def test_export_model_errors_are_one_line(tmp_path, args, option):
    _assert_one_line_error(invoke(["export", "fasternet_t0", *args.split(), "-o", tmp_path / "x.onnx"]), option)


@pytest.mark.parametrize("name, says", [("nosuchop", "unknown model 'nosuchop'"),
                                        (UNAVAILABLE_EXAMPLE, "cannot be built")])
def test_export_unknown_or_unbuildable_name_is_one_line(tmp_path, monkeypatch, name, says):
    with_unavailable_model(monkeypatch)
    result = invoke(["export", name, "-o", tmp_path / "x.onnx"])
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.output
    (line,) = stderr_lines(result)
    assert "'NAME'" in line and says in line, line


def test_export_mismatch_removes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export_cli, "compare_with_torch", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("onnxruntime output differs from PyTorch's by up to 1")))
    out = tmp_path / "pw.onnx"
    result = invoke(["export", "pwconv", "--shape", "8x4x4", "--layers", "1", "-o", out])
    assert result.exit_code == 1 and not out.exists()
    (line,) = stderr_lines(result)
    assert "differs from PyTorch" in line
