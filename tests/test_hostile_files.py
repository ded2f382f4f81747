"""Output files and stdout under hostile conditions: runs that start in the same second, a full
disk, `-o` naming a device, a FIFO, a symlink or a private file, rich markup in paths and error
text, an ASCII locale, and a stdout that is full, closed or a pipe whose reader is gone.

Everything is written inside pytest's temporary folders. Device nodes (os.mknod, which needs root)
are made there too: a copy of /dev/null or /dev/full in tmp_path, never the system's own."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

import flopsbench.board as board
import flopsbench.cli.options as options
from flopsbench import validation
from flopsbench.escaping import plain_text
from flopsbench.exporters import render
from flopsbench.report import Report
from tests.conftest import conv_table1_row, error_row, make_report
from tests.test_cli import invoke, stderr_lines

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--op", "conv,gconv", "--shape", "16x8x8", "--layers", "1", "--runs", "1", "--warmup", "0"]
# An error as torch words it, with rich markup, a terminal sequence and a trailing backslash added
ENFORCE = (r"RuntimeError: [enforce fail at ..\c10\core\impl\alloc_cpu.cpp:72] data. [bold]DefaultCPUAllocator[/bold]: "
           "not enough memory: you tried to allocate 1099511627776 bytes. \x1b[2J C:\\temp\\")


def _report() -> Report:
    failed = error_row()
    failed.error = ENFORCE
    return make_report([conv_table1_row(), failed])


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "saved.json"
    path.write_text(_report().to_json())
    return path


@pytest.fixture
def fake_run(monkeypatch):
    """``ops`` measures nothing: its run adds _report()'s rows, one step each, and ends complete.
    Returns a list of the labels of the steps run (to tell that measuring went on)."""
    steps: list[str] = []

    def run_all(report, workloads, on_step, transport=None):
        for row in _report().rows:
            report.rows.append(row)
            steps.append(row.workload.name)
            on_step(report, f"timed {row.workload.name}")
        report.complete, report.finished_utc = True, "2024-01-02T03:05:06+00:00"
        return report

    monkeypatch.setattr(options, "run_all", run_all)
    return steps


def _temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or "write-test" in p.name]


def _ended_cleanly(result) -> bool:
    """No exception escaped the command (CliRunner keeps it, with no traceback in the output)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return True


def _reports_in(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


# --- device nodes and other things a path can name --------------------------------------------------

def _mknod(path: Path, major: int, minor: int) -> Path:
    """A character device like /dev/null (1, 3) or /dev/full (1, 7), made inside a temporary folder."""
    if os.geteuid() != 0:
        pytest.skip("making a device node (os.mknod) needs root")
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("this container may not make device nodes (no CAP_MKNOD)")
    return path


def _is_device(path: Path, major: int, minor: int) -> bool:
    info = os.lstat(path)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(major, minor)


# --- 1. --save names are unique ------------------------------------------------------------------

def test_save_names_hold_the_time_to_the_microsecond_and_the_pid(tmp_path):
    name = options.save_path(tmp_path, "ops", "cpu", "torch").name
    assert re.fullmatch(rf"ops-cpu-torch-[A-Za-z0-9_.-]+-\d{{8}}T\d{{6}}\.\d{{6}}Z-{os.getpid()}\.json", name), name


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def test_runs_that_pick_the_same_name_save_two_reports(fake_run, monkeypatch, tmp_path):
    """Same clock and same pid (two containers) give one name: O_EXCL gives the second run another."""
    monkeypatch.setattr(options, "datetime", FrozenClock)
    results = tmp_path / "results"
    first = invoke(["ops", *FAST, "--format", "csv", "--save", "--results-dir", results])
    second = invoke(["ops", *FAST, "--format", "md", "--save", "--results-dir", results])
    assert _ended_cleanly(first) and _ended_cleanly(second)
    assert first.exit_code == second.exit_code == 1, (first.output, second.output)  # an error row: exit 1
    names = sorted(p.name for p in results.iterdir())
    assert len(names) == 4 and len({n.rsplit(".", 1)[0] for n in names}) == 2, names
    said = [re.search(r"saved (\S+\.json)", result.stderr)[1] for result in (first, second)]
    assert said[0] != said[1] and all(Path(s).is_file() for s in said)
    assert all(report["complete"] and len(report["rows"]) == 2 for report in _reports_in(results))
    assert not _temporary_files(tmp_path)


# --- 3. a full disk --------------------------------------------------------------------------------

@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Renaming into tmp_path/results fails with ENOSPC while ``state['full']`` is true (a full disk
    shows there as the new file failing to be put in place)."""
    state = {"full": True, "refused": 0}
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if state["full"] and Path(dst).parent.name == "results":
            state["refused"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return state


def test_a_save_that_fails_while_measuring_warns_once_and_measuring_goes_on(fake_run, full_disk, monkeypatch,
                                                                           tmp_path):
    run_all = options.run_all

    def disk_freed_at_the_end(report, workloads, on_step, transport=None):
        run_all(report, workloads, on_step)
        on_step(report, "one more step")
        full_disk["full"] = False

    monkeypatch.setattr(options, "run_all", disk_freed_at_the_end)
    results = tmp_path / "results"
    result = invoke(["ops", *FAST, "--format", "csv", "--save", "--results-dir", results])
    assert _ended_cleanly(result) and full_disk["refused"] >= 2
    assert fake_run == ["conv", "gconv"]  # both steps ran
    warnings = [line for line in stderr_lines(result) if "No space left on device" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:"), stderr_lines(result)
    assert result.exit_code == 1  # the error row's; the final save worked
    (report,) = _reports_in(results)
    assert report["complete"] and len(report["rows"]) == 2
    assert not _temporary_files(tmp_path)


def test_a_final_save_that_fails_is_one_line_exit_1_and_the_view_is_kept(fake_run, full_disk, tmp_path):
    results = tmp_path / "results"
    result = invoke(["ops", *FAST, "--format", "csv", "--save", "--results-dir", results])
    assert _ended_cleanly(result) and result.exit_code == 1
    errors = [line for line in stderr_lines(result) if "error:" in line and "No space left on device" in line]
    assert len(errors) == 1 and str(results) in errors[0], stderr_lines(result)
    assert "conv" in result.stdout and "gconv" in result.stdout  # the measurement is not lost
    assert not _temporary_files(tmp_path)


def test_a_view_written_to_a_full_device_is_one_line_naming_the_saved_json(fake_run, tmp_path):
    full = _mknod(tmp_path / "full", 1, 7)
    results = tmp_path / "results"
    result = invoke(["ops", *FAST, "--format", "md", "-o", full, "--save", "--results-dir", results])
    assert _ended_cleanly(result) and result.exit_code == 1
    (saved_json,) = results.glob("*.json")
    (line,) = [line for line in stderr_lines(result) if "error:" in line]
    assert f"cannot write {full} (No space left on device)" in line and str(saved_json) in line, line
    assert _is_device(full, 1, 7) and not _temporary_files(tmp_path)


# --- 5. -o never replaces what is not a regular file --------------------------------------------------

def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _read_all_of(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read():
        with open(fifo, "rb") as reader:
            got.append(reader.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_writability_check_of_a_fifo_does_not_wait_for_a_reader(tmp_path):
    fifo = _fifo(tmp_path)
    check = threading.Thread(target=validation.check_writable, args=(str(fifo),), daemon=True)
    check.start()
    check.join(timeout=5)
    hung = check.is_alive()
    if hung:  # today's check: open() waits for a reader; be that reader, so the thread ends
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert not hung, "check_writable blocked on a FIFO with no reader"


def test_output_to_a_fifo_is_written_through(saved, tmp_path):
    fifo = _fifo(tmp_path)
    thread, got = _read_all_of(fifo)
    result = invoke(["report", saved, "--format", "md", "-o", fifo])
    thread.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[-1].decode() == render(_report(), "md")


def test_output_to_a_device_node_writes_through_and_keeps_it(saved, tmp_path):
    null = _mknod(tmp_path / "null", 1, 3)
    result = invoke(["report", saved, "-o", null])
    assert result.exit_code == 0, result.output
    assert _is_device(null, 1, 3) and sorted(os.listdir(tmp_path)) == ["null", "saved.json"]


def test_output_to_a_full_device_is_one_line_exit_1(saved, tmp_path):
    full = _mknod(tmp_path / "full", 1, 7)
    result = invoke(["report", saved, "-o", full])
    assert _ended_cleanly(result) and result.exit_code == 1 and result.stdout == ""
    (line,) = stderr_lines(result)
    assert line == f"flopsbench: error: cannot write {full} (No space left on device)", line
    assert _is_device(full, 1, 7) and sorted(os.listdir(tmp_path)) == ["full", "saved.json"]


def test_output_through_a_link_to_stdout_writes_to_that_stream(saved, tmp_path):
    """Like -o /dev/stdout (a symlink to /proc/self/fd/1), with a pipe of the test's own."""
    read_end, write_end = os.pipe()
    link = tmp_path / "stdout"
    link.symlink_to(f"/proc/self/fd/{write_end}")
    try:
        result = invoke(["report", saved, "--format", "md", "-o", link])
        os.close(write_end)
        with open(read_end, "rb") as reader:
            got = reader.read()
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and got.decode() == render(_report(), "md")


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(saved, tmp_path):
    target, link = tmp_path / "target.md", tmp_path / "link.md"
    target.write_text("old")
    link.symlink_to(target.name)
    result = invoke(["report", saved, "--format", "md", "-o", link])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and target.read_text(encoding="utf-8") == render(_report(), "md")


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=oct)
def test_an_existing_file_keeps_its_mode(saved, tmp_path, mode):
    out = tmp_path / "view.md"
    out.write_text("old")
    out.chmod(mode)
    result = invoke(["report", saved, "--format", "md", "-o", out])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == mode and out.read_text(encoding="utf-8") == render(_report(), "md")
    assert not _temporary_files(tmp_path)


def test_a_new_file_gets_0666_less_the_umask(saved, tmp_path):
    previous = os.umask(0o027)
    try:
        result = invoke(["report", saved, "-o", tmp_path / "view.md"])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "view.md").stat().st_mode) == 0o640


def test_onnx_export_to_a_device_node_writes_through(tmp_path):
    null = _mknod(tmp_path / "null", 1, 3)
    result = invoke(["export", "pwconv", "--shape", "8x4x4", "--layers", "1", "-o", null])
    assert result.exit_code == 0, result.output
    assert _is_device(null, 1, 3) and os.listdir(tmp_path) == ["null"]


def test_onnx_export_keeps_an_existing_files_mode(tmp_path):
    out = tmp_path / "pw.onnx"
    out.write_bytes(b"old")
    out.chmod(0o600)
    result = invoke(["export", "pwconv", "--shape", "8x4x4", "--layers", "1", "-o", out])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.stat().st_size > 100
    assert os.listdir(tmp_path) == ["pw.onnx"]


def test_board_output_to_a_device_node_writes_through(monkeypatch, tmp_path, capsys):
    null = _mknod(tmp_path / "null", 1, 3)
    monkeypatch.setattr(board, "measure", lambda args, argv: make_report([conv_table1_row()]))
    monkeypatch.setattr(board, "summary", lambda report: "summary")
    assert board.main(["model.onnx", "-o", str(null)]) == 0
    assert _is_device(null, 1, 3) and os.listdir(tmp_path) == ["null"]


# --- 10. rich markup in paths and error text -------------------------------------------------------

@pytest.mark.parametrize("folder", ["r[/x]", "res[run1]", "[bold]b"])
def test_paths_with_markup_print_as_they_are(fake_run, tmp_path, folder):
    results, out = tmp_path / folder, tmp_path / folder / "view[red].md"  # 'r[/x]' is a folder in a folder
    results.mkdir(parents=True)
    result = invoke(["ops", *FAST, "--format", "md", "-o", out, "--save", "--results-dir", results])
    assert _ended_cleanly(result) and result.exit_code == 1, result.output  # 1: the error row
    (saved_json,) = results.glob("*.json")
    lines = stderr_lines(result)
    assert f"saved {saved_json} and {saved_json.with_suffix('.md').name}" in lines, lines
    assert f"wrote {out}" in lines, lines


def test_error_rows_keep_their_text_on_one_line(fake_run):
    result = invoke(["ops", *FAST, "--format", "csv"])
    assert _ended_cleanly(result) and result.exit_code == 1
    assert f"error gconv 16x8x8: {plain_text(ENFORCE)}" in stderr_lines(result), stderr_lines(result)
    assert "\x1b" not in result.stderr


# --- 13. an ASCII locale --------------------------------------------------------------------------

def _flopsbench(args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flopsbench", *map(str, args)], cwd=ROOT, timeout=300,
                          env=env, **kwargs)


# An ASCII locale: no UTF-8 mode, and no PYTHONIOENCODING to rescue stdout.
ASCII = {**{k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}, "LC_ALL": "C", "PYTHONUTF8": "0"}


@pytest.mark.parametrize("to", ["file", "stdout"])
def test_an_ascii_locale_writes_utf8(saved, tmp_path, to):
    out = tmp_path / "x.md"
    args = ["report", saved, "--format", "md"] + (["-o", out] if to == "file" else [])
    done = _flopsbench(args, ASCII, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    text = (out.read_bytes() if to == "file" else done.stdout).decode("utf-8")
    assert text == render(_report(), "md") and "×" in text


# --- 14. an unwritable stdout ---------------------------------------------------------------------

@pytest.mark.parametrize("stdout, says", [("full", "No space left on device"), ("closed", "it is closed")])
def test_an_unwritable_stdout_is_one_line(saved, stdout, says):
    if stdout == "full":
        with open("/dev/full", "wb") as full:  # opened for writing only, as a shell's '>/dev/full' does
            done = _flopsbench(["report", saved], stdout=full, stderr=subprocess.PIPE)
    else:
        done = _flopsbench(["report", saved], stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 1 and lines == [f"flopsbench: error: cannot write to stdout ({says})"], lines


def _with_reader_gone(args) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reader is gone before anything is written (as `| head -c 10`
    once head has its bytes): every write gets EPIPE."""
    process = subprocess.Popen([sys.executable, "-m", "flopsbench", *map(str, args)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, b"", err)


def test_a_closed_pipe_ends_the_command_quietly_as_sigpipe_would(saved):
    done = _with_reader_gone(["report", saved, "--format", "table"])
    assert done.returncode == 128 + 13 and done.stderr == b"", done.stderr.decode()


TINY_RUN = ["ops", "--op", "pwconv", "--shape", "8x4x4", "--layers", "1", "--runs", "1", "--rounds", "1",
            "--warmup", "0", "--format", "md"]


@pytest.mark.parametrize("stdout", ["reader gone", "full"])
def test_a_measured_run_with_an_unwritable_stdout_keeps_its_saved_json(tmp_path, stdout):
    args = [*TINY_RUN, "--save", "--results-dir", tmp_path]
    if stdout == "full":
        with open("/dev/full", "wb") as full:
            done = _flopsbench(args, stdout=full, stderr=subprocess.PIPE)
    else:
        done = _with_reader_gone(args)
    err = done.stderr.decode()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    (saved_json,) = tmp_path.glob("*.json")
    assert json.loads(saved_json.read_text())["complete"] is True
    if stdout == "full":
        assert done.returncode == 1
        assert f"flopsbench: error: cannot write to stdout (No space left on device); the report is saved in " \
               f"{saved_json}" in err.splitlines(), err
    else:
        assert done.returncode == 128 + 13, err


class Unwritable:
    """A stdout whose every write fails with ``error``."""

    def __init__(self, error: int):
        self.error = error

    def write(self, text):
        raise (BrokenPipeError if self.error == errno.EPIPE else OSError)(self.error, os.strerror(self.error))

    def flush(self):
        pass


@pytest.mark.parametrize("error, status, says", [
    (errno.EPIPE, 128 + 13, None),
    (errno.ENOSPC, 1, "python -m flopsbench.board: error: cannot write to stdout (No space left on device)"),
])
def test_board_stdout_failures(monkeypatch, capsys, error, status, says):
    monkeypatch.setattr(board, "measure", lambda args, argv: make_report([conv_table1_row()]))
    monkeypatch.setattr(board, "summary", lambda report: "summary")
    monkeypatch.setattr(sys, "stdout", Unwritable(error))
    assert board.main(["model.onnx"]) == status
    err = capsys.readouterr().err
    assert (says in err.splitlines()) if says else err == "", err
