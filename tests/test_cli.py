"""The CLI through Typer's CliRunner: tiny real runs, every user-error path, failing cases as
error rows, and Ctrl-C keeping finished rows.

Real timing here is always 16x8x8, at most 2 layers, --runs <= 3, --warmup 0."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex

import pytest
from typer.testing import CliRunner

import flopsbench.cli.options
import flopsbench.runner
import flopsbench_zoo
from flopsbench.backends import BACKENDS
from flopsbench.cli import app
from flopsbench.report import Report
from flopsbench.runner import run_all
from flopsbench.spec import Shape, Workload
from tests.fakes import interrupting_cpu
from tests.test_baselines import with_unavailable_model

TINY = ["--shape", "16x8x8", "--layers", "2", "--runs", "3", "--warmup", "0"]
ONE = ["--shape", "16x8x8", "--layers", "1", "--runs", "2", "--warmup", "0"]

# Hand-worked counts at 16x8x8, 2 layers (fp32, batch 1):
#   conv:  FLOPs 2·64·9·16·16 = 294,912; ideal 2·(64·2·16 + 9·256)·4 B = 34,816 B;
#          impl per layer: read (1024 + 2304)·4, write 1024·4 -> 2·17,408 = 34,816 B
#   pconv: c_p = 4, FLOPs 2·64·9·4·4 = 18,432; ideal 2·(64·2·4 + 9·16)·4 B = 5,248 B;
#          impl per layer: conv read (256 + 144)·4, write 256·4; cat read and write 1024·4
#          -> 2·(5,696 + 5,120) = 21,632 B
EXPECTED = {
    "conv": {"flops": 294_912, "memory_ideal_bytes": 34_816, "memory_impl_bytes": 34_816, "params": 4_608},
    "pconv": {"flops": 18_432, "memory_ideal_bytes": 5_248, "memory_impl_bytes": 21_632, "params": 288},
}


def invoke(args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def json_run():
    result = invoke(["ops", "--op", "conv,pconv", *TINY, "--format", "json"])
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


# --- real runs -------------------------------------------------------------------------------------

def test_json_run_has_two_ok_rows(json_run):
    _, data = json_run
    assert data["schema"] == "flopsbench.report" and data["command"] == "ops"
    assert data["complete"] is True and data["finished_utc"]
    assert [row["workload"]["name"] for row in data["rows"]] == ["conv", "pconv"]
    for row in data["rows"]:
        assert row["status"] == "ok", row["error"]
        assert row["workload"]["shape"] == [16, 8, 8] and row["workload"]["layers"] == 2
        assert len(row["samples_s"]) == 3 and all(s > 0 for s in row["samples_s"])
        assert row["stats"]["n"] == 3
        assert row["stats"]["median_s"] == sorted(row["samples_s"])[1]
        assert row["affinity"]["all_within_cores"] is True
        assert all(cpus == [0] for cpus in row["affinity"]["per_thread"].values())


def test_operator_flops_column_is_per_image_at_batch_3():
    """Table 1 is batch 1; at batch 3 the FLOPs column still holds one image's FLOPs (the note says
    so), and FLOPS uses the batch's."""
    result = invoke(["ops", "--op", "conv", *TINY, "--batch", "3", "--format", "csv"])
    (record,) = csv.DictReader(io.StringIO(result.stdout))
    assert float(record["FLOPs [M]"]) == EXPECTED["conv"]["flops"] / 1e6
    md = invoke(["ops", "--op", "conv", *TINY, "--batch", "3", "--format", "md"]).stdout
    assert "Batch 3: FLOPs (and params) are per image" in md


def test_json_run_counts_by_hand(json_run):
    _, data = json_run
    for row in data["rows"]:
        expected = EXPECTED[row["workload"]["name"]]
        assert {k: row[k] for k in expected} == expected
        assert row["flops_analytic"] == row["flops"]
        assert row["derived"]["flops_per_s"] == pytest.approx(row["flops"] / row["stats"]["median_s"])


def test_json_run_records_how_it_ran(json_run):
    _, data = json_run
    ex = data["execution"]
    assert (ex["device"], ex["dtype"], ex["batch"], ex["threads"], ex["cores"]) == ("cpu", "fp32", 1, 1, [0])
    assert ex["budget"]["exact_runs"] == 3 and ex["budget"]["warmup_s"] == 0
    env = data["environment"]
    assert env["libraries"]["torch"] and env["cpu_model"] and env["allowed_cores"]
    assert data["rows"][1]["workload"]["params"] == {"kernel_size": 3, "ratio": 0.25, "forward_mode": "split_cat"}


def test_json_run_records_its_arguments(json_run):
    _, data = json_run
    assert data["argv"][1:] == ["ops", "--op", "conv,pconv", *TINY, "--format", "json"]


def test_csv_to_file_and_save(tmp_path):
    out, results = tmp_path / "out.csv", tmp_path / "results"
    result = invoke(["ops", "--op", "conv,pconv", *TINY, "--format", "csv", "-o", out,
                     "--save", "--results-dir", results])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the view went to the file; progress and notes go to stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["Operator"] for r in rows] == ["conv", "pconv"]
    assert [r["Runs"] for r in rows] == ["3", "3"]
    assert float(rows[0]["FLOPs [M]"]) == 0.294912
    saved = sorted(p.name for p in results.iterdir() if not p.name.startswith("."))
    assert len(saved) == 2 and saved[0].endswith(".json") and saved[1] == saved[0][:-5] + ".md"
    assert saved[0].startswith("ops-cpu-")
    data = json.loads((results / saved[0]).read_text())
    assert data["complete"] is True and [r["status"] for r in data["rows"]] == ["ok", "ok"]
    md = (results / saved[1]).read_text()
    assert "| Conv 3x3" in md and "| PConv 3x3 (ours, r=1/4)" in md and "INCOMPLETE" not in md  # the paper's names
    # the saved JSON is a complete record: it loads back and renders the same CSV view
    from flopsbench.exporters import render
    assert render(Report.from_dict(data), "csv") == out.read_text()


def test_markdown_to_stdout_with_dash():
    result = invoke(["ops", "--op", "pwconv", *ONE, "--format", "md", "-o", "-"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flopsbench ops on cpu")
    assert any(line.startswith("| pwconv") and "16x8x8" in line for line in lines)
    assert "1 multiply-add = 1 FLOP" in result.stdout


def test_list_lists_every_operator(monkeypatch):
    unavailable = with_unavailable_model(monkeypatch)
    result = invoke(["list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    models_at = next(i for i, line in enumerate(lines) if line.startswith("Models"))
    names = [line.split()[0] for line in lines[1:models_at]]
    assert names == flopsbench_zoo.list_operators() == ["conv", "gconv", "dwconv", "pwconv", "pconv"]
    models = [line.split()[0] for line in lines[models_at + 1:]]
    assert models == flopsbench_zoo.list_models() and models[0] == "fasternet_t0"
    assert any(line.split()[0] == unavailable and "UNAVAILABLE" in line for line in lines)
    assert any(line.split()[0] == "pvt_tiny" and "224px" in line for line in lines)


# --- user errors -----------------------------------------------------------------------------------

ERRORS = [
    ("--op foo", "--op"),
    ("--shape 96x56", "--shape"),
    ("--shape 0x8x8", "--shape"),
    ("--op gconv --shape 20x8x8", "--groups"),
    ("--op pconv --shape 10x8x8", "--ratio"),
    ("--ratio abc", "--ratio"),
    ("--ratio 0", "--ratio"),
    ("--threads 999", "--threads"),
    ("--cores 999", "--cores"),
    ("-o /nonexistent/dir/x.csv", "--output"),
    ("--device cuda", "--device"),
    ("--device arm", "--device"),
    ("--device gpu", "--device"),
    ("--format xml", "--format"),
    ("--dtype fp64", "--dtype"),
    ("--pconv-mode fast", "--pconv-mode"),
    ("--kernel 2", "--kernel"),
    ("--layers 0", "--layers"),
    ("--layers abc", "--layers"),
    ("--runs 0", "--runs"),
    ("--min-runs 5 --max-runs 2", "--max-runs"),
    ("--save --results-dir /proc/flopsbench-test", "--results-dir"),
]


@pytest.fixture
def no_measuring(monkeypatch):
    """Validation must fail before anything is measured."""
    def refuse(*args, **kwargs):
        raise AssertionError("measured despite invalid options")
    monkeypatch.setattr(flopsbench.cli.options, "run_all", refuse)


def _assert_one_line_error(result, option):
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    # the option at fault is the first one the line names (a fix may mention others after it)
    assert re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", lines[0])[0] == option, lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("args, option", ERRORS, ids=[a for a, _ in ERRORS])
def test_user_error_is_one_line_naming_the_option(no_measuring, args, option):
    _assert_one_line_error(invoke(["ops", *shlex.split(args)]), option)


def test_reversed_core_range_names_cores(no_measuring):
    _assert_one_line_error(invoke(["ops", "--cores", "1-0"]), "--cores")


# --- failures inside a case, and Ctrl-C ------------------------------------------------------------

def test_failing_case_becomes_an_error_row(monkeypatch):
    real_count_case = flopsbench.runner.count_case

    def count_case(row, module, x, execution):
        if row.workload.name == "gconv":
            raise RuntimeError("boom\nsecond line")
        return real_count_case(row, module, x, execution)

    monkeypatch.setattr(flopsbench.runner, "count_case", count_case)
    result = invoke(["ops", "--op", "gconv,conv", *ONE, "--format", "json"])
    assert result.exit_code == 1, result.output  # a failing case is data, not a crash; the status says so
    data = json.loads(result.stdout)
    assert data["complete"] is True
    gconv, conv = data["rows"]
    assert (gconv["status"], gconv["error"]) == ("error", "RuntimeError: boom")
    assert gconv["samples_s"] == [] and gconv["stats"] is None
    assert conv["status"] == "ok" and len(conv["samples_s"]) == 2
    assert any("gconv" in line and "boom" in line for line in stderr_lines(result))


def test_run_all_keeps_going_after_an_invalid_case(tiny_execution):
    seen = []
    report = Report(command="ops", execution=tiny_execution, environment={})
    bad = Workload("gconv", Shape(20, 8, 8), 1, (("kernel_size", 3), ("groups", 16)))  # 20 % 16 != 0
    good = Workload("dwconv", Shape(16, 8, 8), 1, (("kernel_size", 3),))
    run_all(report, [bad, good], on_step=lambda rep, label: seen.append(label))
    # both are counted (the bad one fails there), then only the good one is timed, once in each
    # round that has a share of --runs 2 (rounds 3 and 4 have none: no worker is started for them)
    assert seen == ["counted gconv 20x8x8", "counted dwconv 16x8x8", "round 1/4 dwconv 16x8x8",
                    "round 2/4 dwconv 16x8x8"]
    assert report.rows[0].status == "error" and "InvalidParameter" in report.rows[0].error
    assert "groups" in report.rows[0].error
    assert report.rows[1].flops == 64 * 9 * 16 and len(report.rows[1].samples_s) == 2
    assert report.complete is True and report.finished_utc is not None


def _interrupt_on_second_timing(monkeypatch, warmup_runs: int = 0):
    """Ctrl-C at the second case of round 1, in its first call (--runs 2 over 4 rounds gives
    rounds 1 and 2 one sample each, after ``warmup_runs`` warm-up calls)."""
    backend, hook = interrupting_cpu(at=warmup_runs + 1 + 1)
    monkeypatch.setitem(BACKENDS, ("cpu", "torch"), backend)
    return hook.calls


def test_run_all_interrupted_is_incomplete(monkeypatch, tiny_execution):
    calls = _interrupt_on_second_timing(monkeypatch)
    report = Report(command="ops", execution=tiny_execution, environment={})
    workloads = [Workload("pwconv", Shape(16, 8, 8), 1), Workload("pwconv", Shape(8, 8, 8), 1),
                 Workload("pwconv", Shape(4, 8, 8), 1)]
    with pytest.raises(KeyboardInterrupt):
        run_all(report, workloads)
    assert len(calls) == 2 and len(set(calls)) == 2  # two different cases (in the round's shuffled order)
    first = next(r for r in report.rows if f"{r.workload.name} {r.workload.shape}" == calls[0])
    assert first.status == "ok" and len(first.samples_s) == 1  # round 1's share of --runs 2 was 1
    others = [r for r in report.rows if r is not first]
    assert all(not r.samples_s and r.status == "not timed" and r.error for r in others)
    assert all(not r.samples_s and r.error.startswith("the run ended before") for r in others)
    assert all(r.flops for r in report.rows)  # all three were counted
    assert report.complete is False and report.finished_utc is None


def test_ctrl_c_keeps_finished_rows(monkeypatch, tmp_path):
    _interrupt_on_second_timing(monkeypatch, warmup_runs=3)  # the CLI's warm-up: --warmup 0, still 3 calls
    results = tmp_path / "results"
    result = invoke(["ops", "--op", "conv,pconv,pwconv", *ONE, "--format", "csv",
                     "--save", "--results-dir", results])
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    saved = sorted(results.glob("*.json"))
    assert len(saved) == 1
    data = json.loads(saved[0].read_text())
    assert data["complete"] is False and data["finished_utc"] is None
    assert [r["workload"]["name"] for r in data["rows"]] == ["conv", "pconv", "pwconv"]
    timed = [r["workload"]["name"] for r in data["rows"] if r["samples_s"]]
    assert len(timed) == 1 and sorted(len(r["samples_s"]) for r in data["rows"]) == [0, 0, 1]  # round 1's first case
    assert "INCOMPLETE" in saved[0].with_suffix(".md").read_text()
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted((r["Operator"], r["Runs"], r["Status"]) for r in rows) == sorted(
        (name, "1", "ok") if name in timed else (name, "", "not timed") for name in ("conv", "pconv", "pwconv"))
    # 3 counted + 1 timed step of 3 × (1 + 2 rounds: --runs 2 over 4 rounds leaves the last two none)
    assert any("interrupted after 4 of 9 steps" in line for line in stderr_lines(result))
