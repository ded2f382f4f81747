"""`flopsbench sweep PLAN.toml` (flopsbench.sweep, flopsbench.sweep_ray): the plan and its checks,
the jobs and their spec hash, resuming, the cores kept quiet, one job run and interrupted, the
merge with a column group per device; behind the marker ``ray``, Ray itself: a local instance on
127.0.0.1 running two devices' jobs (never overlapping on one device, overlapping across devices),
Ctrl-C, joining a cluster, and an end-to-end sweep of real operators on two local devices.

Jobs are mostly tests/sweep_fake_job.py, a stand-in for ``python -m flopsbench`` that writes a
small valid report and records when and where it ran."""

from __future__ import annotations

import _thread
import hashlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from flopsbench import sweep
from flopsbench.devices import Device
from flopsbench.merge import merge
from flopsbench.report import Report
from tests.test_cli import invoke, stderr_lines
from tests.test_merge import conv, report
from tests.test_remote import device  # noqa: F401  (a fixture: a fake board over ssh)

FAKE_JOB = (sys.executable, str(Path(__file__).with_name("sweep_fake_job.py")))
INVENTORY = """\
[devices.local0]
transport = "local"
kind = "cpu"
cores = [0]
runtime = "torch"

[devices.local1]
transport = "local"
cores = [1]

[devices.board]
transport = "ssh"
host = "raspberrypi.local"
user = "pi"
kind = "arm"
cores = [0]
runtime = "onnxruntime"
"""
PLAN = """\
devices = "devices.toml"

[[cases]]
command = "ops"
ops = ["pconv", "dwconv"]
shapes = ["96x56x56", "192x28x28"]
options = ["--min-time", "0.2", "--rounds", "2"]
devices = ["local0", "board"]

[[cases]]
command = "model"
models = ["fasternet_t0"]
devices = ["local0"]
"""


def write_plan(folder: Path, plan: str = PLAN, inventory: str = INVENTORY) -> Path:
    (folder / "devices.toml").write_text(inventory)
    (folder / "plan.toml").write_text(plan)
    return folder / "plan.toml"


class SerialEngine:
    """Runs each launch here, one after another (the engine's protocol without Ray)."""

    def __init__(self):
        self.launched: list[sweep.Launch] = []

    def run(self, launches, done):
        for launch in launches:
            self.launched.append(launch)
            done(launch, sweep.run_job(launch))

    def describe(self) -> dict:
        return {"name": "serial (tests)"}


def run_fake(plan: sweep.Plan, out: Path, engine=None) -> sweep.Sweep:
    state = sweep.start(plan, out)
    out.mkdir(exist_ok=True)
    return sweep.run(state, engine or SerialEngine(), sweep.launcher(plan, None, None, FAKE_JOB))


# --- the plan ---------------------------------------------------------------------------------------

def test_a_plan_expands_to_one_job_per_device_and_case(tmp_path):
    plan = sweep.load_plan(write_plan(tmp_path))
    jobs = plan.jobs()
    assert [job.label for job in jobs] == [
        "pconv 96x56x56 on local0", "pconv 96x56x56 on board", "pconv 192x28x28 on local0",
        "pconv 192x28x28 on board", "dwconv 96x56x56 on local0", "dwconv 96x56x56 on board",
        "dwconv 192x28x28 on local0", "dwconv 192x28x28 on board", "fasternet_t0 on local0"]
    assert [d.name for d in plan.devices] == ["local0", "board"]
    first, model = jobs[0], jobs[-1]
    assert first.args("INV", "OUT.json") == ["ops", "--op", "pconv", "--shape", "96x56x56", "--on", "local0",
                                             "--devices", "INV", "--min-time", "0.2", "--rounds", "2",
                                             "--format", "json", "-o", "OUT.json"]
    assert model.args("INV", "OUT.json") == ["model", "fasternet_t0", "--on", "local0", "--devices", "INV",
                                             "--format", "json", "-o", "OUT.json"]


def test_the_spec_hash_is_sha256_of_the_canonical_spec(tmp_path):
    job = sweep.load_plan(write_plan(tmp_path)).jobs()[1]
    spec = {"command": "ops", "case": {"op": "pconv", "shape": "96x56x56"}, "options": ["--min-time", "0.2",
                                                                                        "--rounds", "2"],
            "device": {"name": "board", "transport": "ssh", "host": "raspberrypi.local", "user": "pi", "port": None,
                       "python": "python3", "kind": "arm", "cores": [0], "runtime": "onnxruntime", "threads": 1}}
    assert job.spec == spec
    assert job.hash == hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert job.file == job.hash + ".json"


def test_the_hash_follows_the_spec_not_its_spelling(tmp_path):
    def hashes(plan: str, inventory: str = INVENTORY) -> list[str]:
        return [job.hash for job in sweep.load_plan(write_plan(tmp_path, plan, inventory)).jobs()]

    base = hashes(PLAN)
    assert len(set(base)) == len(base) == 9
    assert hashes(PLAN.replace('"96x56x56"', '" 96X56x56 "')) == base  # a shape's spelling
    assert hashes(PLAN.replace('"0.2"', '"0.3"'))[:8] != base[:8]  # the options
    moved = hashes(PLAN, INVENTORY.replace("cores = [0]\nruntime = \"torch\"", "cores = [1]\nruntime = \"torch\""))
    assert [a == b for a, b in zip(moved, base)] == [False, True] * 4 + [False]  # local0's record changed


def test_a_job_asked_for_twice_runs_once(tmp_path):
    twice = PLAN + '\n[[cases]]\ncommand = "model"\nmodels = ["fasternet_t0", "fasternet_t0"]\ndevices = ["local0"]\n'
    assert len(sweep.load_plan(write_plan(tmp_path, twice)).jobs()) == 9


def test_ops_without_shapes_take_table_1s(tmp_path):
    plan = 'devices = "devices.toml"\n[[cases]]\ncommand = "ops"\nops = ["conv"]\ndevices = ["local1"]\n'
    shapes = [job.shape for job in sweep.load_plan(write_plan(tmp_path, plan)).jobs()]
    assert shapes == ["96x56x56", "192x28x28", "384x14x14", "768x7x7"]


CASE = '[[cases]]\ncommand = "ops"\nops = ["pconv"]\ndevices = ["local0"]\n'
BAD_PLANS = [
    ('devices = "devices.toml"\nextra = 1\n' + CASE, "unknown key 'extra'; a plan has devices and cases"),
    (CASE, "devices must name the inventory file"),
    ('devices = "missing.toml"\n' + CASE, "missing.toml: no such file"),
    ('devices = "devices.toml"\n', "no cases"),
    ('devices = "devices.toml"\ncases = "pconv"\n', "no cases"),
    ('devices = "devices.toml"\n' + CASE.replace('"ops"\n', '"bench"\n', 1), "cases[0]: command must be 'ops' or"),
    ('devices = "devices.toml"\n' + CASE + 'models = ["x"]\n', "cases[0]: unknown key 'models' for command 'ops'"),
    ('devices = "devices.toml"\n' + CASE.replace('["pconv"]', '"pconv"'), "ops must be a non-empty list"),
    ('devices = "devices.toml"\n' + CASE.replace('["pconv"]', '[]'), "ops must be a non-empty list"),
    ('devices = "devices.toml"\n' + CASE.replace('["pconv"]', '[1]'), "ops must be a non-empty list"),
    ('devices = "devices.toml"\n' + CASE.replace('["pconv"]', '["pcnv"]'), "cases[0]: ops: unknown operator 'pcnv'"),
    ('devices = "devices.toml"\n' + CASE.replace('["local0"]', '["pi5"]'), "no device 'pi5' in the inventory"),
    ('devices = "devices.toml"\n' + CASE + 'shapes = ["96x56"]\n', "cases[0]: shapes:"),
    ('devices = "devices.toml"\n' + CASE.replace('devices = ["local0"]\n', ''), "devices is missing"),
    ('devices = "devices.toml"\n[[cases]]\ncommand = "model"\nmodels = ["fastrnet_t0"]\ndevices = ["local0"]\n',
     "unknown model 'fastrnet_t0'"),
    ('devices = "devices.toml"\n[[cases]\n', "not TOML"),
]


@pytest.mark.parametrize("text, message", BAD_PLANS, ids=[m for _, m in BAD_PLANS])
def test_a_bad_plan_is_one_line_naming_what_is_wrong(tmp_path, text, message):
    with pytest.raises(sweep.PlanError) as caught:
        sweep.load_plan(write_plan(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "plan.toml"))


def test_a_bad_inventory_is_the_plans_error(tmp_path):
    with pytest.raises(sweep.PlanError, match="devices: .*device 'local0': unknown key 'colour'"):
        sweep.load_plan(write_plan(tmp_path, inventory=INVENTORY.replace('kind = "cpu"', 'colour = "red"')))


BAD_OPTIONS = [
    (["--min-tme", "0.2"], "No such option: --min-tme"),
    (["--rounds", "many"], "'many' is not an integer"),
    (["--format", "md"], "--format is the sweep's"),
    (["--output=x.json"], "-o/--output is the sweep's"),
    (["-ox.json"], "-o/--output is the sweep's"),
    (["--on", "local1"], "--on is the sweep's"),
    (["--help"], "--help is not a job's option"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_options_are_parsed_as_the_command_parses_them(tmp_path, options, message):
    plan = 'devices = "devices.toml"\n' + CASE + f"options = {json.dumps(options)}\n"
    result = invoke(["sweep", write_plan(tmp_path, plan), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = stderr_lines(result)
    assert "cases[0]: options: " in line and message in line, line
    assert result.stdout == ""


def test_a_models_option_is_not_another_model(tmp_path):
    plan = 'devices = "devices.toml"\n[[cases]]\ncommand = "model"\nmodels = ["fasternet_t0"]\n' \
           'options = ["fasternet_t1"]\ndevices = ["local0"]\n'
    result = invoke(["sweep", write_plan(tmp_path, plan), "--dry-run"])
    assert result.exit_code == 2 and "fasternet_t1 is not an option; list models in models" in result.stderr


def test_dry_run_lists_each_jobs_command(tmp_path):
    plan = write_plan(tmp_path)
    result = invoke(["sweep", plan, "--dry-run", "--out", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 9 and all(line.startswith("todo flopsbench ") for line in lines)
    first_hash = sweep.load_plan(plan).jobs()[0].hash
    assert lines[0] == (f"todo flopsbench ops --op pconv --shape 96x56x56 --on local0 --devices {tmp_path}/devices.toml"
                        f" --min-time 0.2 --rounds 2 --format json -o {tmp_path}/out/{first_hash}.json")
    assert not (tmp_path / "out").exists()


# --- merging: a column group per device ----------------------------------------------------------------

def test_two_devices_of_one_kind_on_one_machine_get_a_column_each():
    merged = merge([("a", report([conv([0.040])], device_name="local0")),
                    ("b", report([conv([0.030])], device_name="local1")),
                    ("c", report([conv([0.050])], device_name="local0"))])
    assert [column.title for column in merged.columns] == ["cpu torch local0", "cpu torch local1"]
    (row,) = merged.rows
    assert [cell.stats.median_s for cell in row.cells.values()] == [0.045, 0.030]  # local0's two runs pooled


# --- the cores ------------------------------------------------------------------------------------------

LOCAL0 = Device("local0", cores=(0,))
LOOPBACK_BOARD = Device("board", transport="ssh", host="127.0.0.1", kind="arm", cores=(1,), runtime="onnxruntime")
REMOTE_BOARD = Device("pi4", transport="ssh", host="raspberrypi.local", kind="arm", cores=(2,), runtime="onnxruntime")


def test_the_coordinator_keeps_off_the_cores_devices_here_time_on():
    cores = sweep.plan_cores([LOCAL0, LOOPBACK_BOARD, REMOTE_BOARD], allowed=[0, 1, 2, 3])
    assert (cores.timed, cores.coordinator, cores.shared) == ((0, 1), (2, 3), False)  # pi4's core 2 is not here
    assert cores.for_job(LOCAL0) == (0, 2, 3)  # the free cores and its own
    assert cores.for_job(LOOPBACK_BOARD) == (1, 2, 3)  # a fake or loopback ssh runs its worker here
    assert cores.for_job(REMOTE_BOARD) == (2, 3)


def test_where_every_core_is_timed_they_are_shared():
    cores = sweep.plan_cores([LOCAL0, LOOPBACK_BOARD], allowed=[0, 1])
    assert (cores.coordinator, cores.shared) == ((0, 1), True)
    assert cores.for_job(LOCAL0) == (0, 1)


@pytest.mark.parametrize("host, here", [("localhost", True), ("127.0.0.2", True), ("[::1]", True),
                                        (socket.gethostname(), True), ("raspberrypi.local", False),
                                        ("192.0.2.7", False)])
def test_which_ssh_devices_are_this_machine(host, here):
    assert sweep.on_this_machine(Device("b", transport="ssh", host=host, runtime="onnxruntime")) is here


def test_the_cli_warns_when_the_timed_cores_must_be_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "finished", lambda path: True)  # every job done: no Ray needed
    monkeypatch.setattr("flopsbench.cpu.allowed_cores", lambda: [0, 1])
    plan = 'devices = "devices.toml"\n[[cases]]\ncommand = "ops"\nops = ["pconv"]\nshapes = ["96x56x56"]\n' \
           'devices = ["local0", "local1"]\n'
    result = invoke(["sweep", write_plan(tmp_path, plan)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in stderr_lines(result) if line.startswith("warning: ")]
    assert warnings == ["warning: every core this process may use (0,1) is a device's timed core, so the "
                        "coordinator and Ray's daemons share them with the timing; leave a core free of devices "
                        "(docs/sweep.md)"]
    monkeypatch.setattr("flopsbench.cpu.allowed_cores", lambda: [0, 1, 2])
    assert not any(line.startswith("warning: ") for line in stderr_lines(invoke(["sweep", tmp_path / "plan.toml"])))


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = invoke(["sweep", write_plan(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert stderr_lines(result)[-1] == ("flopsbench: error: a sweep runs on Ray, which is not installed; install the "
                                        "extra: pip install 'flopsbench[ray]'")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # Ray's settings are left as they were


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("")
    result = invoke(["sweep", write_plan(tmp_path), "--out", tmp_path / "taken"])
    assert result.exit_code == 2 and f"{tmp_path}/taken is not a folder" in stderr_lines(result)[-1]


# --- one job -------------------------------------------------------------------------------------------

def one_launch(tmp_path, options: tuple[str, ...] = (), affinity=None) -> sweep.Launch:
    job = sweep.Job("ops", "pconv", "96x56x56", options, LOCAL0)
    return sweep.Launch(job, INVENTORY, affinity, None, str(tmp_path), FAKE_JOB)


def test_a_job_runs_with_its_cores_and_returns_its_report(tmp_path):
    before = os.sched_getaffinity(0)
    core = max(before)
    record = sweep.run_job(one_launch(tmp_path, affinity=(core,)))
    assert record["status"] == "ok" and record["returncode"] == 0 and record["host"] == socket.gethostname()
    data = json.loads(record["report"])
    assert Report.from_dict(data).environment["device_name"] == "local0"
    ran = data["environment"]["fake_job"]
    assert ran["affinity"] == [core] and os.sched_getaffinity(0) == before  # the caller's own is kept
    assert record["started_unix_s"] <= ran["started_unix_s"] <= ran["ended_unix_s"] <= record["ended_unix_s"]
    assert record["stderr_tail"] == "wrote the report"


def test_a_failed_job_keeps_its_stderr(tmp_path):
    record = sweep.run_job(one_launch(tmp_path, ("--fail",)))
    assert (record["status"], record["returncode"], record["report"]) == ("failed", 1, None)
    assert record["stderr_tail"] == "fake job: asked to fail"


def test_a_job_that_cannot_start_is_failed(tmp_path):
    launch = sweep.Launch(one_launch(tmp_path).job, INVENTORY, program=(str(tmp_path / "no-python"),))
    record = sweep.run_job(launch)
    assert record["status"] == "failed" and record["stderr_tail"].startswith(f"cannot start {tmp_path}/no-python")


def test_an_interrupted_job_hears_ctrl_c_and_keeps_its_report(tmp_path):
    """Ray's cancel raises KeyboardInterrupt in the task; Ray's workers block SIGINT (so would the
    job, inheriting it), as this thread does here."""
    timer = threading.Timer(1.0, _thread.interrupt_main)
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        timer.start()
        started = time.monotonic()
        record = sweep.run_job(one_launch(tmp_path, ("--sleep", "30")))
    finally:
        timer.cancel()
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
    assert time.monotonic() - started < 10
    assert (record["status"], record["returncode"]) == ("interrupted", 130)
    assert Report.from_dict(json.loads(record["report"])).complete is False


def test_a_job_gets_its_environment_less_rays(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RAY_JOB_ID", "01000000")
    monkeypatch.setenv("FLOPSBENCH_SWEEP_TEST", "kept")
    program = (sys.executable, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[-1], 'w'))")
    record = sweep.run_job(sweep.Launch(one_launch(tmp_path).job, INVENTORY, program=program))
    env = json.loads(record["report"])
    assert env["FLOPSBENCH_SWEEP_TEST"] == "kept" and "OMP_NUM_THREADS" not in env and "RAY_JOB_ID" not in env
    given = sweep.Launch(one_launch(tmp_path).job, INVENTORY, env={"PATH": os.environ["PATH"], "ONLY": "1"},
                         program=program)
    env = json.loads(sweep.run_job(given)["report"])  # exactly as given (Python may add LC_CTYPE itself)
    assert env["ONLY"] == "1" and "FLOPSBENCH_SWEEP_TEST" not in env


# --- a sweep, and resuming one ---------------------------------------------------------------------------

def test_a_sweep_saves_each_report_by_its_hash_and_merges_them(tmp_path):
    plan = sweep.load_plan(write_plan(tmp_path))
    state = run_fake(plan, tmp_path / "out")
    assert state.complete and state.exit_status == 0 and state.count("ok") == 9
    record = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert record["schema"] == "flopsbench.sweep" and record["complete"] is True
    assert record["plan"]["cases"][0]["ops"] == ["pconv", "dwconv"] and set(record["inventory"]) == {"local0", "board"}
    for job, saved in zip(plan.jobs(), record["jobs"]):
        assert saved["hash"] == job.hash and saved["device"] == job.device.name and saved["case"] == job.case
        assert saved["status"] == "ok" and saved["file"] == job.file and saved["host"] == socket.gethostname()
        assert saved["started_unix_s"] < saved["ended_unix_s"]
        assert Report.from_dict(json.loads((tmp_path / "out" / job.file).read_text())).complete
    merged = json.loads((tmp_path / "out" / "sweep-merged.json").read_text())
    assert record["merged"] == {"json": "sweep-merged.json", "md": "sweep-merged.md"}
    assert merged and "local0" in (tmp_path / "out" / "sweep-merged.md").read_text()


def test_resuming_skips_the_finished_reports_only(tmp_path):
    plan = sweep.load_plan(write_plan(tmp_path))
    out = tmp_path / "out"
    run_fake(plan, out)
    jobs = plan.jobs()
    first = json.loads((out / "sweep.json").read_text())["jobs"]
    again = sweep.start(plan, out)
    assert again.count("skipped") == 9
    for job, before in zip(jobs, first):  # a skipped job still says when and where it ran
        kept = again.records[job.hash]
        assert (kept["started_unix_s"], kept["ended_unix_s"], kept["host"]) == (
            before["started_unix_s"], before["ended_unix_s"], before["host"]) and kept["started_unix_s"]
    saved = json.loads((out / "sweep.json").read_text())
    saved["jobs"][0].update(started_unix_s="yesterday", host=["hostile"])
    saved["jobs"][1] = "not a job"
    (out / "sweep.json").write_text(json.dumps(saved))
    hostile = sweep.start(plan, out)
    assert hostile.records[jobs[0].hash]["started_unix_s"] is None and hostile.records[jobs[0].hash]["host"] is None
    (out / "sweep.json").write_text("[1, 2")
    assert sweep.start(plan, out).count("skipped") == 9
    (out / jobs[0].file).write_text("{not json")
    incomplete = json.loads((out / jobs[1].file).read_text()) | {"complete": False}
    (out / jobs[1].file).write_text(json.dumps(incomplete))
    failed = json.loads((out / jobs[2].file).read_text())
    failed["rows"][0].update(status="error", error="RuntimeError: lost")
    (out / jobs[2].file).write_text(json.dumps(failed))
    (out / jobs[3].file).write_text(json.dumps({"rows": "not a report"}))
    engine = SerialEngine()
    state = run_fake(plan, out, engine)
    assert [launch.job.hash for launch in engine.launched] == [job.hash for job in jobs[:4]]
    assert state.count("skipped") == 5 and state.count("ok") == 4 and sweep.finished(out / jobs[0].file)


def test_a_failed_job_is_kept_and_the_others_go_on(tmp_path):
    plan = PLAN.replace('options = ["--min-time", "0.2", "--rounds", "2"]', 'options = ["--fail"]')
    state = run_fake(sweep.load_plan(write_plan(tmp_path, plan)), tmp_path / "out")
    assert state.count("failed") == 8 and state.count("ok") == 1 and state.exit_status == 1
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())["jobs"][0]
    assert (saved["status"], saved["returncode"], saved["file"]) == ("failed", 1, None)
    assert saved["stderr_tail"] == "fake job: asked to fail"


def test_the_cli_says_how_many_were_skipped(tmp_path):
    plan_file = write_plan(tmp_path)
    run_fake(sweep.load_plan(plan_file), tmp_path / "plan-sweep")
    result = invoke(["sweep", plan_file])  # every job done already: Ray is not even started
    assert result.exit_code == 0, result.output
    lines = stderr_lines(result)
    assert "9 finished already" in lines[0] and lines[0].endswith("(skipped), 0 to run"), lines
    assert lines[-1].startswith("sweep complete: 9 skipped; wrote "), lines
    assert "local0" in result.stdout and "board" in result.stdout  # the merged table


# --- Ray ------------------------------------------------------------------------------------------------

ray_marker = pytest.mark.ray


def ray_or_skip():
    """Skip without Ray; Ray itself is imported by the engine only (it reads its settings then)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs Ray, the ray extra: pip install -e '.[ray]'")


TWO_DEVICES = 'devices = "devices.toml"\n[[cases]]\ncommand = "ops"\nops = ["pconv", "dwconv", "conv"]\n' \
              'shapes = ["96x56x56"]\noptions = ["--sleep", "{sleep}"]\ndevices = ["local0", "local1"]\n'


def overlaps(a: dict, b: dict) -> bool:
    return a["started_unix_s"] < b["ended_unix_s"] and b["started_unix_s"] < a["ended_unix_s"]


@ray_marker
def test_ray_runs_one_job_per_device_at_a_time_and_devices_in_parallel(tmp_path):
    ray_or_skip()
    from flopsbench.sweep_ray import RayEngine

    plan = sweep.load_plan(write_plan(tmp_path, TWO_DEVICES.replace("{sleep}", "1")))
    with RayEngine(plan.devices) as engine:
        assert engine.describe()["nodes"] == ["127.0.0.1"]  # bound to the loopback address
        state = run_fake(plan, tmp_path / "out", engine)
    assert state.complete and state.count("ok") == 6
    runs = [json.loads((tmp_path / "out" / record["file"]).read_text())["environment"]["fake_job"]
            | {"device": record["device"]} for record in state.records.values()]
    for a in runs:
        for b in runs:
            if a is not b and a["device"] == b["device"]:
                assert not overlaps(a, b), (a, b)
    assert any(overlaps(a, b) for a in runs for b in runs if a["device"] != b["device"])


@ray_marker
def test_ctrl_c_cancels_the_rest_and_keeps_the_running_jobs_reports(tmp_path):
    ray_or_skip()
    from flopsbench.sweep_ray import RayEngine

    plan = sweep.load_plan(write_plan(tmp_path, TWO_DEVICES.replace("{sleep}", "60")))
    with RayEngine(plan.devices) as engine:
        engine.describe()
        timer = threading.Timer(4.0, _thread.interrupt_main)
        timer.start()
        started = time.monotonic()
        try:
            state = run_fake(plan, tmp_path / "out", engine)
        finally:
            timer.cancel()
    assert time.monotonic() - started < 30
    assert not state.complete and state.exit_status == 130
    assert state.count("interrupted") == 2 and state.count("cancelled") == 4, state.records
    for record in state.records.values():
        if record["status"] == "interrupted":
            assert Report.from_dict(json.loads((tmp_path / "out" / record["file"]).read_text())).complete is False
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["complete"] is False


# A Ray head on the loopback address, holding local0's resource only; it stops when its stdin closes.
HEAD = """\
import logging, sys, ray
ray.init(address="local", num_cpus=1, resources={"local0": 1}, include_dashboard=False,
         logging_level=logging.ERROR, log_to_driver=False, object_store_memory=100 << 20)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""
# Ray's settings on this machine for the head and whoever joins it: loopback, no tokens, no usage reports.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@ray_marker
def test_a_sweep_joins_a_cluster_holding_its_devices_resources(tmp_path, monkeypatch):
    ray_or_skip()
    from flopsbench.sweep_ray import RayEngine

    for key, value in LOOPBACK_RAY.items():
        monkeypatch.setenv(key, value)
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        plan_file = write_plan(tmp_path, 'devices = "devices.toml"\n[[cases]]\ncommand = "ops"\nops = ["pconv"]\n'
                                         'shapes = ["96x56x56", "192x28x28"]\ndevices = ["local0", "local1"]\n')
        result = _sweep_cli(plan_file, "--ray-address", address)
        assert result.returncode == 2, result.stderr
        (line,) = [line for line in result.stderr.splitlines() if line.strip()][1:]  # after the sweep's first line
        assert f"the Ray cluster at {address} has no resource for device(s) local1; start a node that holds each, " \
               f"e.g. ray start --address {address} --resources '{{\"local1\": 1}}'" in line, line
        plan = sweep.load_plan(plan_file)
        local0 = replace(plan, cases=tuple(replace(case, devices=("local0",)) for case in plan.cases))
        with RayEngine(local0.devices, address) as engine:
            assert engine.describe()["nodes"] == ["127.0.0.1"]
            state = run_fake(local0, tmp_path / "out", engine)
        assert state.count("ok") == 2 and {record["host"] for record in state.records.values()} == {
            socket.gethostname()}
    finally:
        head.stdin.close()
        head.wait(timeout=60)


def test_an_address_where_nothing_answers_is_said_at_once():
    from flopsbench.sweep_ray import EngineError, check_reachable

    with pytest.raises(EngineError, match="^nothing answers at 127.0.0.1:[0-9]+ .*ray start --head"):
        check_reachable(f"127.0.0.1:{_free_port()}")
    check_reachable("auto")  # Ray's own kinds of address are Ray's to check


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sweep_cli(plan: Path, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flopsbench", "sweep", str(plan), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=plan.parent, env=env)


@ray_marker
def test_a_sweep_of_real_operators_on_local_devices_and_a_board_merges_into_table_1(tmp_path, device):
    """local0 on core 0, local1 on core 1, and a board over (fake) ssh on core 1 (test_remote's
    device: the real worker, torch-free, in a world of its own): one merged Table 1, a column group
    per device."""
    ray_or_skip()
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs cores 0 and 1")
    inventory = INVENTORY.replace('host = "raspberrypi.local"', 'host = "localhost"').replace(
        'user = "pi"', f'user = "pi"\npython = "{device["root"] / "bin" / "python3"}"').replace(
        'kind = "arm"\ncores = [0]', 'kind = "arm"\ncores = [1]')
    plan = write_plan(tmp_path, 'devices = "devices.toml"\n[[cases]]\ncommand = "ops"\nops = ["pconv"]\n'
                                'shapes = ["32x14x14"]\noptions = ["--min-time", "0.05", "--rounds", "2", '
                                '"--warmup", "0", "--layers", "1"]\ndevices = ["local0", "local1", "board"]\n',
                      inventory)
    result = _sweep_cli(plan, env=device["env"])
    assert result.returncode == 0, result.stderr
    out = tmp_path / "plan-sweep"
    markdown = (out / "sweep-merged.md").read_text()
    for title in ("cpu torch local0", "cpu torch local1", "arm onnxruntime"):
        assert title in markdown, markdown
    assert "PConv" in markdown and json.loads((out / "sweep-merged.json").read_text())
    record = json.loads((out / "sweep.json").read_text())
    assert [job["status"] for job in record["jobs"]] == ["ok", "ok", "ok"]
    assert record["cores"] == {"allowed": sorted(os.sched_getaffinity(0)), "timed": [0, 1],
                               "coordinator": sorted(os.sched_getaffinity(0)), "shared": len(
                                   os.sched_getaffinity(0)) == 2}
    for job in record["jobs"]:
        saved = Report.from_dict(json.loads((out / job["file"]).read_text()))
        assert saved.environment["device_name"] == job["device"]
        assert list(saved.execution.cores) == [0 if job["device"] == "local0" else 1]
    again = _sweep_cli(plan, env=device["env"])  # resumed: nothing runs
    assert again.returncode == 0 and "3 finished already" in again.stderr, again.stderr
    assert re.search(r"sweep complete: 3 skipped", again.stderr)
