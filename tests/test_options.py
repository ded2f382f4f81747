"""The shared options, declared once (SharedOptions): both measuring commands take exactly them,
with the timing budget's own defaults, and they reach the Execution; --version; and the small
things the commands now do alike (errors for numbers, help, column names, the default view)."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import typer

import flopsbench
import flopsbench.cli.model
import flopsbench.cli.ops
from flopsbench import board
from flopsbench.cli import app
from flopsbench.cli.options import SharedOptions, run_settings, validate
from flopsbench.exporters import frame
from flopsbench.report import Row
from flopsbench.spec import Execution, Shape, TimingBudget, Workload
from tests.conftest import conv_table1_row, make_report
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

SHARED = [field.name for field in dataclasses.fields(SharedOptions)]


def _params(command: str) -> dict:
    """The click parameters of a command, by name."""
    return {param.name: param for param in typer.main.get_command(app).commands[command].params}


@pytest.mark.parametrize("command", ["ops", "model"])
def test_both_commands_take_every_shared_option_as_declared(command):
    params = _params(command)
    assert set(SHARED) <= set(params)
    for name in SHARED:
        assert params[name].default == getattr(SharedOptions(), name), name
    assert [p.opts for p in _params("ops").values() if p.name in SHARED] == \
           [p.opts for p in _params("model").values() if p.name in SHARED]
    assert [p.help for p in _params("ops").values() if p.name in SHARED] == \
           [p.help for p in _params("model").values() if p.name in SHARED]


def test_timing_defaults_are_the_budgets_own():
    budget, options = TimingBudget(), SharedOptions()
    assert (options.warmup, options.min_time, options.min_runs, options.max_runs, options.runs, options.rounds,
            options.stop_ci) == (budget.warmup_s, budget.min_time_s, budget.min_runs, budget.max_runs,
                                 budget.exact_runs, budget.rounds, budget.stop_ci)
    assert validate("ops", options).execution.budget == budget
    assert _params("model")["breakdown_time"].default == Execution().breakdown_time_s


def test_the_board_runners_defaults_are_the_budgets_own():
    args = board.parser().parse_args(["model.onnx"])
    assert board.budget_from(args) == TimingBudget()


def test_run_settings_takes_the_shared_options_by_name():
    """The keyword form (ceilings, tests) validates exactly what SharedOptions declares."""
    assert set(SHARED) == {f.name for f in dataclasses.fields(SharedOptions)}
    assert run_settings("ops", warmup=0.5, rounds=3) == validate("ops", SharedOptions(warmup=0.5, rounds=3))
    with pytest.raises(TypeError):
        run_settings("ops", no_such_option=1)


@pytest.mark.parametrize("command, args", [("ops", ["--op", "pwconv", "--shape", "8x4x4"]),
                                           ("model", ["fasternet_t0"])])
def test_shared_options_reach_the_execution(monkeypatch, command, args):
    seen = []
    monkeypatch.setattr(getattr(flopsbench.cli, command), "run_and_report", lambda settings, w: seen.append(settings))
    result = invoke([command, *args, "--warmup", "0.5", "--min-time", "1", "--min-runs", "7", "--max-runs", "99",
                     "--rounds", "3", "--stop-ci", "0.05", "--batch", "2", "--seed", "4", "--format", "csv"])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.execution.budget == TimingBudget(warmup_s=0.5, min_time_s=1.0, min_runs=7, max_runs=99,
                                                     rounds=3, stop_ci=0.05)
    assert (settings.execution.batch, settings.execution.seed, settings.fmt) == (2, 4, "csv")


def test_no_command_reads_its_own_locals():
    for module in (flopsbench.cli.ops, flopsbench.cli.model):
        assert "locals()" not in inspect.getsource(module)


# --- --version -------------------------------------------------------------------------------------

def test_version_prints_the_release_and_the_commit():
    result = invoke(["--version"])
    assert result.exit_code == 0, result.output
    release = re.escape(flopsbench.__version__)
    pattern = rf"flopsbench {release} \((git [0-9a-f]{{40}}(, modified)?|not a git checkout)\)"
    assert re.fullmatch(pattern, result.stdout.strip()), result.stdout


# --- alike across commands ------------------------------------------------------------------------

def test_a_list_of_batches_says_to_run_twice():
    result = invoke(["ops", "--batch", "1,8"])
    _assert_one_line_error(result, "--batch")
    assert "one integer" in stderr_lines(result)[0] and "run twice" in stderr_lines(result)[0]


@pytest.mark.parametrize("args, option, says", [
    ("ops --layers x", "--layers", "'x' is not an integer"),
    ("model fasternet_t0 --threads two", "--threads", "'two' is not an integer"),
    ("ops --warmup soon", "--warmup", "'soon' is not a number"),
    ("export conv -o x.onnx --kernel 3.5", "--kernel", "'3.5' is not an integer"),
])
def test_numbers_are_plain_one_line_errors(args, option, says):
    result = invoke(args.split())
    _assert_one_line_error(result, option)
    assert says in stderr_lines(result)[0] and "Input should be" not in result.stderr


@pytest.mark.parametrize("command", ["ops", "model", "export", "report", "list"])
def test_help_names_arguments_and_lists_plainly(command):
    text = invoke([command, "--help"]).stdout
    assert "{" not in text and "<list[" not in text, text


def test_model_help_names_its_argument_as_a_shell_user_reads_it():
    text = invoke(["model", "--help"]).stdout
    assert text.splitlines()[0].endswith("[OPTIONS] NAMES...") and "\n  NAMES...  " in text


def test_operator_and_model_tables_share_column_names():
    model = Row(Workload("fasternet_t0", Shape(3, 224, 224), 1, kind="model", fuse_bn=True), params=3_905_500)
    columns = frame(make_report([conv_table1_row(), model])).columns
    assert list(columns).count("Shape") == 1 and "Input" not in columns
    assert "Params [M]" in columns and "Params [K]" not in columns


def test_report_shows_the_table_view_by_default(tmp_path, hand_report):
    saved = tmp_path / "saved.json"
    saved.write_text(hand_report.to_json())
    shown, as_table = invoke(["report", saved]), invoke(["report", saved, "--format", "table"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == as_table.stdout and "┃" in shown.stdout


def test_the_board_words_flops_as_the_tables_do():
    row = dataclasses.replace(conv_table1_row(), runtime={"onnxruntime": "1.17"})
    line = board.summary(make_report([row]))
    assert "FLOPS 81.3 G/s" in line and "GFLOPS" not in line


def test_the_tests_never_read_or_fill_the_users_cache():
    """A user's cached ceilings would change the views tested; exports would fill their cache."""
    from pathlib import Path

    from flopsbench.constants import cache_root

    assert not cache_root().resolve().is_relative_to(Path.home().resolve() / ".cache")
