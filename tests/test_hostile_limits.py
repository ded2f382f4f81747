"""Hostile limits: option values that would exhaust memory or time, or end up as non-standard JSON,
are refused before anything is built, in one line naming the option (exit 2, no traceback); a
corrupt ONNX cache entry is exported again; a narrow terminal still shows the table; a text file
given as --weights is named for what it is."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import flopsbench.board as board
import flopsbench.cli.ops
import flopsbench.cli.options
from flopsbench import validation, workloads
from flopsbench.exporters import export_table
from flopsbench.onnx_export import cached_export
from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from flopsbench_zoo import get_model
from flopsbench_zoo.weights import load_official_weights
from tests.conftest import conv_table1_row, make_report, pconv_custom_row
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

ROOT = Path(__file__).resolve().parent.parent
HUGE_RANGE = "0-99999999999"  # 10^11 cores: building the range first took 23.5 GB before being checked
GB = 1 << 30


@pytest.fixture
def no_measuring(monkeypatch):
    """Validation must fail before anything is measured."""
    def refuse(*args, **kwargs):
        raise AssertionError("measured despite invalid options")
    monkeypatch.setattr(flopsbench.cli.options, "run_all", refuse)


@pytest.fixture
def memory(monkeypatch):
    """``memory(n)``: pretend ``n`` bytes of memory are available."""
    def pretend(available: int) -> None:
        monkeypatch.setattr(validation, "available_memory", lambda: available)
    return pretend


def _limited_python(code: str, limit: int = 2 * GB) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose address space is capped at ``limit`` bytes."""
    script = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)


# --- item 9: --cores ranges are checked before they are built ------------------------------------------

def test_huge_core_range_is_refused_within_two_gb():
    result = _limited_python(f"""
        from flopsbench.validation import OptionError, parse_cores
        try:
            parse_cores({HUGE_RANGE!r}, 1)
        except OptionError as exc:
            print(exc.option, exc, sep="|")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    option, message = result.stdout.strip().split("|")
    assert option == "--cores" and len(message) < 300 and "0-" in message, message


def test_board_refuses_huge_core_range_within_two_gb(tmp_path):
    result = _limited_python(f"""
        import sys
        from flopsbench import board
        sys.exit(board.main([{str(tmp_path / 'm.onnx')!r}, "--cores", {HUGE_RANGE!r}]))
    """)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "--cores" in lines[0] and len(lines[0]) < 300


@pytest.mark.parametrize("text", ["0-9999999", "0,5-9999999", "9999990-9999999"])
def test_cli_core_range_beyond_the_machine_is_one_short_line(no_measuring, text):
    result = invoke(["ops", "--cores", text])
    _assert_one_line_error(result, "--cores")
    assert len(stderr_lines(result)[0]) < 300


# --- item 17: bounds and non-finite floats ----------------------------------------------------------------

OPS_ERRORS = [
    ("--layers 1001", "--layers"),
    ("--runs 1000001", "--runs"),
    ("--max-runs 1000001", "--max-runs"),
    ("--min-runs 1000001 --max-runs 1000001", "--min-runs"),
    ("--rounds 1001", "--rounds"),
    ("--warmup nan", "--warmup"),
    ("--warmup inf", "--warmup"),
    ("--warmup 1e300", "--warmup"),
    ("--min-time nan", "--min-time"),
    ("--min-time inf", "--min-time"),
    ("--min-time -inf", "--min-time"),
    ("--stop-ci nan", "--stop-ci"),
    ("--stop-ci inf", "--stop-ci"),
    ("--ratio nan", "--ratio"),
    ("--ratio inf", "--ratio"),
    ("--shape 96x56x5²", "--shape"),
    ("--shape 2000000x8x8", "--shape"),
    ("--shape 100000x10000x10000", "--shape"),  # 40 TB of input alone
    ("--op conv --shape 100000x1x1", "--shape"),  # 360 GB of conv weights
    ("--op conv --shape 96x56x56 --kernel 99999", "--shape"),
]


@pytest.mark.parametrize("args, option", OPS_ERRORS, ids=[a for a, _ in OPS_ERRORS])
def test_ops_bound_is_one_line(no_measuring, args, option):
    _assert_one_line_error(invoke(["ops", *shlex.split(args)]), option)


MODEL_ERRORS = [
    ("--breakdown 2 --breakdown-time nan", "--breakdown-time"),
    ("--breakdown 2 --breakdown-time inf", "--breakdown-time"),
    ("--num-classes 1000000000000", "--num-classes"),
    ("--resolution 100000", "--resolution"),
    ("--batch 1000000000", "--batch"),
]


@pytest.mark.parametrize("args, option", MODEL_ERRORS, ids=[a for a, _ in MODEL_ERRORS])
def test_model_bound_is_one_line(no_measuring, args, option):
    result = invoke(["model", "fasternet_t0", *shlex.split(args)])
    _assert_one_line_error(result, option)


@pytest.mark.parametrize("args, option", [
    ("pwconv --layers 1001", "--layers"),
    ("pwconv --shape 16x100000x100000", "--shape"),
    ("pwconv --batch 100000000", "--batch"),
    ("fasternet_t0 --resolution 100000", "--resolution"),
])
def test_export_bound_is_one_line(tmp_path, args, option):
    _assert_one_line_error(invoke(["export", *args.split(), "-o", tmp_path / "x.onnx"]), option)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("args, option", [
    ("--warmup nan", "--warmup"),
    ("--min-time inf", "--min-time"),
    ("--runs 1000001", "--runs"),
    ("--rounds 1001", "--rounds"),
])
def test_board_bound_is_one_line(tmp_path, capsys, args, option):
    code = board.main([str(tmp_path / "m.onnx"), *args.split()])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert re.findall(r"(?<![\w-])--[a-z][a-z-]*", lines[0])[0] == option, lines[0]


def test_limits_are_stated_in_the_help():
    text = re.sub(r"\s+", " ", invoke(["ops", "--help"], env={"COLUMNS": "200"}).stdout)
    for option, limit in (("--layers", "1000"), ("--rounds", "1000"), ("--runs", "1,000,000"),
                          ("--warmup", "86400")):
        assert re.search(re.escape(option) + r" <[a-z]+> [^[]*?" + re.escape(limit), text), (option, limit)


# --- item 17: cases too large for this machine's memory ---------------------------------------------------

def test_batch_too_large_for_memory_names_batch(no_measuring, memory):
    memory(1 * GB)  # 96x56x56 fp32 input and output: 2.4 MB per image -> about 440 images fit
    result = invoke(["ops", "--op", "pwconv", "--shape", "96x56x56", "--batch", "1000"])
    _assert_one_line_error(result, "--batch")
    assert "GB" in stderr_lines(result)[0]


def test_a_case_that_fits_is_not_refused(monkeypatch, memory):
    memory(1 * GB)
    seen = []
    monkeypatch.setattr(flopsbench.cli.ops, "run_and_report", lambda settings, workloads: seen.extend(workloads))
    assert invoke(["ops", "--op", "pwconv", "--shape", "96x56x56", "--batch", "100"]).exit_code == 0
    assert len(seen) == 1


def test_cuda_batch_is_checked_against_host_memory_at_counting_batch_only(monkeypatch, memory):
    """On cuda the input is made on the GPU; the host only counts at batches 1 and 2."""
    memory(1 * GB)
    seen = []
    monkeypatch.setattr(flopsbench.cli.options, "check_device", lambda device: None)
    monkeypatch.setattr(flopsbench.cli.ops, "run_and_report", lambda settings, workloads: seen.extend(workloads))
    result = invoke(["ops", "--device", "cuda", "--op", "pwconv", "--shape", "96x56x56", "--batch", "1000"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    result = invoke(["ops", "--device", "cuda", "--op", "pwconv", "--shape", "96x5600x5600", "--batch", "1000"])
    _assert_one_line_error(result, "--shape")


def test_model_resolution_too_large_for_memory(no_measuring, memory, monkeypatch):
    memory(1 * GB)  # 3x12000x12000 fp32 input is 1.7 GB on its own
    def refuse(*args):
        raise AssertionError("built the model despite its input not fitting")
    monkeypatch.setattr(workloads, "check_buildable", refuse)
    result = invoke(["model", "fasternet_t0", "--resolution", "12000"])
    _assert_one_line_error(result, "--resolution")
    assert "available" in stderr_lines(result)[0]


def test_available_memory_is_a_positive_number_of_bytes():
    available = validation.available_memory()
    assert available is None or (isinstance(available, int) and available > 0)


# --- item 16: the ONNX cache --------------------------------------------------------------------------

TINY = TimingBudget(warmup_s=0, warmup_runs=0, min_time_s=0, min_runs=1, max_runs=1, exact_runs=1, rounds=1)
ORT = Execution(runtime="onnxruntime", runtime_options=(("opt_level", "all"), ("spinning", True)), budget=TINY)


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _pwconv_rows(n: int = 1):
    workload = Workload("pwconv", Shape(8, 4, 4), 1)
    return run_all(Report("ops", ORT, {}), [workload] * n).rows


@pytest.mark.parametrize("damage", ["garbage", "truncated", "same-size", "no-checksum", "bad-checksum-record"])
def test_damaged_cache_entry_is_exported_again(onnx_cache, damage):
    (first,) = _pwconv_rows()
    assert first.status == "ok" and first.runtime["export_cached"] is False
    path = Path(first.runtime["onnx_file"])
    data = path.read_bytes()
    checksum = next(onnx_cache.glob("*.json"))
    if damage == "garbage":
        path.write_bytes(b"not an onnx file")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "same-size":
        path.write_bytes(data[:-8] + b"\xff" * 8)
    elif damage == "no-checksum":
        checksum.unlink()
    else:
        checksum.write_text('{"bytes": "x", "sha256": 7}')
    (second,) = _pwconv_rows()
    assert second.status == "ok", second.error
    assert second.runtime["export_cached"] is False and second.runtime["export_cache_problem"]
    assert path.read_bytes() != b"not an onnx file" and len(path.read_bytes()) > len(data) // 2
    (third,) = _pwconv_rows()  # the new entry is whole again
    assert third.runtime["export_cached"] is True and "export_cache_problem" not in third.runtime


def test_intact_cache_entry_is_reused(onnx_cache):
    module = torch.nn.Conv2d(4, 4, 1).eval()
    x = torch.zeros(1, 4, 8, 8)
    first = cached_export(module, x)
    again = cached_export(module, x)
    assert (first.cached, again.cached) == (False, True) and first.path == again.path
    record = json.loads(first.path.with_suffix(".json").read_text())
    assert record["bytes"] == first.path.stat().st_size and len(record["sha256"]) == 64


@pytest.mark.parametrize("make", ["file", "proc"])
def test_unusable_cache_folder_is_one_line_naming_the_variable(no_measuring, tmp_path, monkeypatch, make):
    cache = tmp_path / "cache"
    if make == "file":
        cache.write_text("a file, not a folder")
    else:
        cache = Path("/proc/flopsbench-cache-test")  # unwritable even for root
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(cache))
    result = invoke(["ops", "--runtime", "onnxruntime", "--op", "pwconv", "--shape", "8x4x4"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = stderr_lines(result)
    assert "FLOPSBENCH_CACHE" in line and "writable" in line, line


def test_cache_folder_is_not_checked_for_torch_runs(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("FLOPSBENCH_CACHE", str(tmp_path / "cache"))
    seen = []
    monkeypatch.setattr(flopsbench.cli.ops, "run_and_report", lambda settings, workloads: seen.extend(workloads))
    assert invoke(["ops", "--op", "pwconv", "--shape", "8x4x4"]).exit_code == 0 and seen


# --- item 17: a narrow terminal ---------------------------------------------------------------------------

class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", ["20", "1"])
def test_narrow_terminal_still_shows_the_numbers(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    stream = FakeTty()
    export_table(make_report([conv_table1_row(), pconv_custom_row()]), stream)
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    for needle in ("conv", "pconv", "96x56x56", "2,601", "Median", "32.0", "ratio=0.5"):
        assert needle in text, needle


def test_wide_terminal_keeps_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    stream = FakeTty()
    export_table(make_report([conv_table1_row()]), stream)
    widths = [len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in stream.getvalue().splitlines()]
    assert max(widths) <= 300


# --- item 17: --weights that is not a checkpoint ----------------------------------------------------------

@pytest.mark.parametrize("content", [b"hello world\nthis is text\n", b"", b"\x00\x01binary junk"])
def test_non_checkpoint_weights_say_what_they_are(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint") as caught:
        load_official_weights(get_model("fasternet_t0").create(), path)
    assert "KeyError" not in str(caught.value)


def test_text_weights_through_the_cli(no_measuring, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n")
    result = invoke(["model", "fasternet_t0", "--weights", path])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = stderr_lines(result)
    assert "--weights" in line and "not a PyTorch checkpoint" in line and "KeyError" not in line, line


def test_malicious_pickle_never_runs(tmp_path):
    """Safe loading stays: a pickle that would run code is refused, and the code does not run."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError):
        load_official_weights(get_model("fasternet_t0").create(), path)
    assert not marker.exists()
