"""Your own operators and models: the example plugin (examples/custom_operator.py) counted, timed in
fresh workers and exported like a built-in one, installed plugins (entry points), and plugins that
fail, each a one-line error."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from flopsbench import plugins, worker
from flopsbench.backends import Backend
from flopsbench.backends.ort import OnnxRuntime
from flopsbench.spec import Execution, Shape, Workload
from flopsbench.transport import FreshProcesses
from flopsbench_zoo._registry import _OPERATORS
from flopsbench_zoo.models import _MODELS
from tests.test_cli import _assert_one_line_error, invoke, stderr_lines

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_operator.py"
QUICK = ["--runs", "2", "--rounds", "1", "--warmup", "0", "--format", "json"]


@pytest.fixture(autouse=True)
def own_registries(monkeypatch):
    """Each test starts from the built-in registries and no plugin loaded, and leaves them so."""
    operators_before, models_before = dict(_OPERATORS._entries), dict(_MODELS._entries)
    monkeypatch.setattr(plugins, "_loaded", [])
    yield
    _OPERATORS._entries.clear()
    _OPERATORS._entries.update(operators_before)
    _MODELS._entries.clear()
    _MODELS._entries.update(models_before)


def _run(args) -> dict:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- the example, end to end -----------------------------------------------------------------------

def test_the_example_operator_is_counted_and_timed_in_workers():
    """ghostconv at 16x8x8, one layer, k = 1: the primary conv 8x8·(1·16·8) = 8,192 multiply-adds
    and the depthwise 3x3 one 8x8·(9·8) = 4,608, 12,800 FLOPs; memory (8x8·2·16 + 16·8 + 9·8)·4 B
    = 8,992 B. The workers that time it are fresh processes: they load the plugin too."""
    report = _run(["ops", "--plugin", EXAMPLE, "--op", "ghostconv", "--shape", "16x8x8", "--layers", "1", *QUICK])
    (row,) = report["rows"]
    assert row["status"] == "ok", row["error"]
    assert row["flops"] == row["flops_analytic"] == 12_800
    assert row["memory_ideal_bytes"] == 8_992
    assert row["params"] == 16 * 8 + 9 * 8
    assert len(row["samples_s"]) == 2 and all(s > 0 for s in row["samples_s"])
    assert report["environment"]["plugins"] == [str(EXAMPLE)]


def test_the_example_model_is_counted_and_timed():
    """ghostnet_toy at 32x32: stem 3·32·9 = 864, five BNs 5·64 = 320, four Ghost modules
    4·(32·16 + 16·9) = 2,624, classifier 32·1000 + 1000 = 33,000: 36,808 params."""
    report = _run(["model", "--plugin", EXAMPLE, "ghostnet_toy", "--resolution", "32", *QUICK])
    (row,) = report["rows"]
    assert row["status"] == "ok", row["error"]
    assert row["params"] == 36_808 and row["workload"]["shape"] == [3, 32, 32]
    assert len(row["samples_s"]) == 2


def test_the_example_operator_exports_to_onnx(tmp_path):
    out = tmp_path / "ghost.onnx"
    result = invoke(["export", "--plugin", EXAMPLE, "ghostconv", "--shape", "16x8x8", "--layers", "1", "-o", out])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0 and "ghostconv 16x8x8" in result.stderr and "FLOPs 12.8 k" in result.stderr


def test_list_shows_the_plugins_names():
    result = invoke(["list", "--plugin", EXAMPLE])
    assert result.exit_code == 0, result.output
    assert "ghostconv" in result.stdout and "ghostnet_toy" in result.stdout


def test_a_plugin_checks_its_parameters_as_the_built_ins_do():
    _assert_one_line_error(invoke(["ops", "--plugin", EXAMPLE, "--op", "ghostconv", "--shape", "15x8x8"]), "--shape")
    _assert_one_line_error(invoke(["ops", "--plugin", EXAMPLE, "--op", "ghostconv", "--kernel", "2"]), "--kernel")


# --- workers ----------------------------------------------------------------------------------------

def test_workers_load_the_plugins_their_parent_loaded():
    plugins.load(str(EXAMPLE))
    assert Backend().transport().command[-2:] == ["--plugin", str(EXAMPLE)]
    assert "--plugin" not in OnnxRuntime().transport().command  # it opens the ONNX file: torch-free
    assert FreshProcesses(plugins=("a.py", "b:c")).command[-4:] == ["--plugin", "a.py", "--plugin", "b:c"]


def test_a_plugin_that_fails_in_a_worker_fails_each_case():
    job = {"task": "time", "execution": Execution().to_dict(), "budget": {"exact_runs": 1, "rounds": 1},
           "cases": [{"id": i, "workload": Workload("ghostconv", Shape(16, 8, 8), 1).to_dict()} for i in (0, 1)]}
    events = []
    worker.serve(job, events.append, setup_error=plugins.PluginError("plugin x.py failed while loading: ValueError: no"))
    errors = [e for e in events if e["event"] == "error"]
    assert [e["id"] for e in errors] == [0, 1] and all("x.py failed" in e["error"] for e in errors)


# --- installed plugins and failures -----------------------------------------------------------------

def test_an_installed_plugin_loads_through_its_entry_point(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(
        f"def register():\n    import runpy\n    runpy.run_path({str(EXAMPLE)!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint(name="toy", value="toy_plugin:register", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point] if group == plugins.GROUP else [])
    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    assert "ghostconv" in result.stdout and plugins.loaded() == ("toy_plugin:register",)


@pytest.mark.parametrize("plugin, says", [
    ("missing.py", "no plugin file at"),
    ("no_such_plugin_module", "no module 'no_such_plugin_module'"),
    ("not a name", "neither a Python file"),
    ("RAISES", "failed while loading: RuntimeError: broken on purpose"),
    ("CONV", "operator 'conv' is already registered"),
])
def test_a_plugin_that_cannot_load_is_one_line(tmp_path, plugin, says):
    (tmp_path / "raises.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "conv.py").write_text("import flopsbench_zoo\n"
                                      "flopsbench_zoo.register_operator(flopsbench_zoo.get_operator('conv'))\n")
    plugin = {"RAISES": tmp_path / "raises.py", "CONV": tmp_path / "conv.py"}.get(plugin, plugin)
    result = invoke(["ops", "--plugin", plugin, "--op", "conv"])
    _assert_one_line_error(result, "--plugin")
    assert says in stderr_lines(result)[0]
