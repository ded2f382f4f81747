"""The allocator's convention (flopsbench.allocator, ``--allocator``): the timing processes keep to
it, the counting process does not, a job or report from elsewhere naming another is refused, and
two runs under different conventions are two protocols."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from flopsbench import allocator
from flopsbench.compare import ProtocolError, compare_reports
from flopsbench.merge import merge
from flopsbench.report import Report
from flopsbench.schema import ReportError
from tests.test_case_process import _run
from tests.test_cli import _assert_one_line_error, invoke
from tests.test_compare import _report
from tests.test_merge import conv, report as merge_report
from tests.test_plugins import own_registries  # noqa: F401 -- a fixture: the registries as they were
from tests.test_worker import PW, _worker, pw_onnx  # noqa: F401 -- pw_onnx is a fixture

GLIBC = pytest.mark.skipif(allocator.glibc_version() is None, reason="--allocator retain needs glibc's malloc")

MAPPED_64_MIB = """
import ctypes, sys
from flopsbench import allocator
allocator.apply(sys.argv[1])
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in "arena ordblks smblks hblks hblkhd usm fsm uord ford keep".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
before = mallinfo2().hblks
block = bytearray(64 << 20)
print(mallinfo2().hblks - before)
"""


@GLIBC
@pytest.mark.parametrize("convention, mapped", [("retain", 0), ("system", 1)])
def test_retain_serves_even_a_64_mib_block_from_the_heap(convention, mapped):
    result = subprocess.run([sys.executable, "-c", MAPPED_64_MIB, convention], capture_output=True, text=True,
                            timeout=60, check=True)
    assert int(result.stdout) == mapped


@GLIBC
@pytest.mark.parametrize("convention, mapped", [("retain", 0), ("system", 1)])
def test_each_cases_process_keeps_to_the_convention_and_the_counting_one_does_not(
        tmp_path, monkeypatch, tiny_execution, own_registries, convention, mapped):  # noqa: F811
    report, builds = _run(tmp_path, monkeypatch, replace(tiny_execution, allocator=convention), channels=(8, 16))
    assert [row.status for row in report.rows] == ["ok", "ok"]
    assert [m for pid, _, m in builds if pid != os.getpid()] == [mapped, mapped]
    assert {m for pid, _, m in builds if pid == os.getpid()} == {1}  # this process counted: the system's


def test_an_unknown_convention_and_a_missing_glibc_are_refused(monkeypatch):
    with pytest.raises(allocator.AllocatorError, match=r"^--allocator: 'lots' is not one of retain, system$"):
        allocator.apply("lots")
    monkeypatch.setattr(allocator, "glibc_version", lambda: None)
    with pytest.raises(allocator.AllocatorError, match="^--allocator retain needs glibc's malloc"):
        allocator.apply("retain")
    allocator.apply("system")  # always there: nothing to set
    assert not allocator.available("retain") and allocator.available("system")


def test_a_job_naming_another_convention_fails_each_case_not_the_worker(pw_onnx, tiny_execution):  # noqa: F811
    execution = {**replace(tiny_execution, runtime="onnxruntime").to_dict(), "allocator": "$(reboot)"}
    job = {"task": "time", "execution": execution, "budget": asdict(tiny_execution.budget),
           "cases": [{"id": i, "workload": PW.to_dict(), "onnx": str(pw_onnx)} for i in (3, 4)]}
    result = _worker(json.dumps(job))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [(e["id"], e["error"]) for e in events if e["event"] == "error"]
    assert errors == [(i, "AllocatorError: --allocator: '$(reboot)' is not one of retain, system") for i in (3, 4)]
    assert events[-1]["event"] == "done"


@pytest.mark.parametrize("args", [["--allocator", "jemalloc"], ["--allocator", ""]])
def test_a_bad_allocator_is_one_line(args):
    _assert_one_line_error(invoke(["ops", "--op", "pwconv", *args]), "--allocator")


def test_retain_without_glibc_is_one_line_before_anything_is_measured(monkeypatch):
    monkeypatch.setattr(allocator, "glibc_version", lambda: None)
    result = invoke(["ops", "--op", "pwconv"])
    _assert_one_line_error(result, "--allocator")
    assert "use --allocator system" in result.stderr


def test_a_report_without_the_field_was_timed_with_the_systems_and_a_bad_value_is_refused():
    data = json.loads(_report([]).to_json())
    assert data["execution"]["allocator"] == "retain"
    del data["execution"]["allocator"]
    assert Report.from_dict(data).execution.allocator == "system"  # made before --allocator existed
    for hostile in ("lots", 1, None, ["retain"], {"retain": True}):
        data["execution"]["allocator"] = hostile
        with pytest.raises(ReportError, match="allocator"):
            Report.from_dict(data)


def test_two_conventions_are_two_protocols():
    with pytest.raises(ProtocolError, match="^BASE ran with --allocator retain, NEW ran with --allocator system$"):
        compare_reports(_report([]), _report([], allocator="system"))
    system = merge_report([conv([0.030])])
    system.execution = replace(system.execution, allocator="system")
    merged = merge([("a", merge_report([conv([0.040])])), ("b", system)])
    assert [column.title for column in merged.columns] == ["cpu torch allocator=retain", "cpu torch allocator=system"]
