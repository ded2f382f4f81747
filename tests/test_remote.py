"""``--on DEVICE`` over ssh, against a fake ssh and scp (tests/fake_ssh) that run the real worker on
this machine, in a "device" of its own: a separate HOME and TMPDIR, and a Python that cannot import
torch (nor fvcore, typer, rich, pandas, pydantic, onnx) nor any flopsbench module but those shipped
into the device's temporary directory. What is checked: the shipping, the round trip, interruption,
a dropped connection, an unreachable device, and the clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flopsbench import remote

ROOT = Path(__file__).resolve().parents[1]
FAKE_SSH = ROOT / "tests" / "fake_ssh"

SITECUSTOMIZE = '''\
import importlib.abc, importlib.machinery, sys
DEVICE_TMP = {tmp!r}
BLOCKED = {{"torch", "fvcore", "typer", "rich", "pandas", "pydantic", "timm", "torchvision", "onnx", "flopsbench_zoo"}}


class DeviceOnly(importlib.abc.MetaPathFinder):
    """What the board has: onnxruntime and numpy, and the flopsbench modules shipped to it."""

    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in BLOCKED:
            raise ImportError(f"{{name}} is not on the device")
        if top == "flopsbench":
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or not str(spec.origin).startswith(DEVICE_TMP):
                raise ImportError(f"{{name}} was not shipped to the device")
            return spec
        return None


sys.meta_path.insert(0, DeviceOnly())
'''


@pytest.fixture
def device(tmp_path):
    """A fake board: its root (home/, tmp/, the logs of ssh and scp), the inventory naming it 'board'
    (cores [1], or [0] on a one-core machine), and the environment that puts the fake ssh on PATH."""
    root = tmp_path / "device"
    for folder in ("home", "tmp", "bin", "site"):
        (root / folder).mkdir(parents=True)
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tmp=str(root / "tmp") + "/"))
    python = root / "bin" / "python3"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={root / 'site'} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    core = max(os.sched_getaffinity(0))
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[devices.board]\ntransport = "ssh"\nhost = "board"\nuser = "pi"\npython = "{python}"\n'
                         f'kind = "arm"\ncores = [{core}]\n')
    env = {**os.environ, "PATH": f"{FAKE_SSH}{os.pathsep}{os.environ['PATH']}", "FAKE_SSH_ROOT": str(root)}
    return {"root": root, "inventory": inventory, "env": env, "core": core}


def flopsbench(device, *args, env=None, **popen):
    return subprocess.Popen([sys.executable, "-m", "flopsbench", "ops", "--on", "board", "--devices",
                             str(device["inventory"]), *args], cwd=ROOT, env={**device["env"], **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def log(device, name: str) -> list[dict]:
    path = device["root"] / f"{name}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def left_there(device) -> list[str]:
    """What was left in the device's temporary folder: nothing, not even the '.ses' file that
    importing onnxruntime writes into TMPDIR (the worker's TMPDIR is its own directory there)."""
    return [path.name for path in (device["root"] / "tmp").iterdir()]


QUICK = ("--shape", "32x28x28", "--layers", "1", "--min-time", "0.05", "--warmup", "0", "--stop-ci", "0")


def test_a_run_on_a_board_over_ssh_ships_the_worker_times_there_and_cleans_up(device, tmp_path):
    out = tmp_path / "out.json"
    process = flopsbench(device, "--op", "pwconv,dwconv", *QUICK, "--rounds", "2", "--format", "json", "-o", str(out))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    data = json.loads(out.read_text())
    assert [row["status"] for row in data["rows"]] == ["ok", "ok"]
    for row in data["rows"]:
        assert len(row["round_sizes"]) == 2 and len(row["samples_s"]) == sum(row["round_sizes"]) > 0
        assert row["affinity"]["all_within_cores"] and row["runtime"]["onnx_file"]
    environment = data["environment"]
    assert environment["device_name"] == "board" and environment["transport"]["kind"] == "ssh"
    assert environment["transport"]["target"] == "pi@board"
    assert environment["transport"]["directory"].startswith(str(device["root"] / "tmp"))
    assert environment["userland_bits"] == 64 and environment["counted_on"]["libraries"]["torch"]
    assert data["execution"]["device"] == "arm" and data["execution"]["cores"] == [device["core"]]
    # what went there: the worker's modules once, each ONNX file once for both rounds
    copies = log(device, "scp")
    assert sum(Path(c["sources"][0]).name == "flopsbench" for c in copies) == 1
    assert sorted(Path(c["sources"][0]).suffix for c in copies) == ["", ".onnx", ".onnx"]
    workers = [c for c in log(device, "ssh") if "flopsbench.worker" in c["command"]]
    assert len(workers) == 2  # a fresh worker per round, there too
    assert left_there(device) == []  # the temporary directory is gone


def test_every_shipped_module_exists_and_the_worker_needs_no_other():
    package = ROOT / "flopsbench"
    assert all((package / f"{module}.py").is_file() for module in remote.REMOTE_MODULES)
    # the round trip above runs the worker with only these importable; the probe is among them
    assert {"worker", "probe", "backends/ort"} <= set(remote.REMOTE_MODULES)


def test_an_unreachable_device_is_one_line_and_nothing_is_left(device, tmp_path):
    process = flopsbench(device, "--op", "pwconv", *QUICK, "-o", str(tmp_path / "out.md"),
                         env={"FAKE_SSH_UNREACHABLE": "1"})
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "'--on'" in stderr and "Connection refused" in stderr and "flopsbench devices" in stderr
    assert not (tmp_path / "out.md").exists()


def test_a_dropped_connection_keeps_the_samples_taken_and_fails_the_rest(device, tmp_path):
    """Lines a worker sends: ready, start, then per case 'case' and 'samples'. After 5 lines the
    first case has its samples and the second has begun: the connection drops there."""
    out = tmp_path / "out.json"
    process = flopsbench(device, "--op", "pwconv,dwconv", *QUICK, "--rounds", "1", "--seed", "0", "--format", "json",
                         "-o", str(out), env={"FAKE_SSH_DROP_AFTER": "5"})
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr  # a row failed
    assert "Traceback" not in stderr
    rows = json.loads(out.read_text())["rows"]
    done = [row for row in rows if row["status"] == "ok"]
    lost = [row for row in rows if row["status"] != "ok"]
    assert len(done) == 1 and done[0]["samples_s"]
    assert len(lost) == 1 and "ssh connection to board was lost" in lost[0]["error"]
    assert left_there(device) == []


def test_a_file_that_cannot_be_shipped_fails_its_rows_in_one_line_each(device, tmp_path):
    out = tmp_path / "out.json"
    process = flopsbench(device, "--op", "pwconv", *QUICK, "--rounds", "1", "--format", "json", "-o", str(out),
                         env={"FAKE_SCP_FAIL_ONNX": "1"})
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "error" and "No space left on device" in row["error"] and "board" in row["error"]
    assert left_there(device) == []


def _remote_worker_timing(root: Path) -> int | None:
    """The pid of a worker running in the device's directory with all its threads pinned (it
    times then), or None."""
    for entry in os.listdir("/proc"):
        try:
            pid = int(entry)
            if b"flopsbench.worker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            if not os.readlink(f"/proc/{pid}/cwd").startswith(str(root / "tmp")):
                continue
            threads = os.listdir(f"/proc/{pid}/task")
            if len(os.sched_getaffinity(0)) > 1 and all(
                    len(os.sched_getaffinity(int(tid))) == 1 for tid in threads):
                return pid
        except (ValueError, OSError):
            continue
    return None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="tells a pinned worker by its affinity: needs 2 cores")
@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c-to-the-group", "sigint-to-flopsbench-only"])
def test_ctrl_c_stops_the_worker_there_and_keeps_its_samples(device, tmp_path, to_group):
    """A terminal's Ctrl-C reaches flopsbench and its ssh processes; ssh passes no signal on, and
    would die of it: the worker there gets its SIGINT by pid over a second connection, ends its
    round and sends the samples it took."""
    out = tmp_path / "out.json"
    process = flopsbench(device, "--op", "pwconv", "--shape", "64x56x56", "--layers", "1", "--min-time", "60",
                         "--max-runs", "1000000", "--rounds", "2", "--warmup", "0", "--stop-ci", "0",
                         "--format", "json", "-o", str(out), start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline and (len(seen) < 3 or len(set(seen[-3:])) != 1 or seen[-1] is None):
            seen.append(_remote_worker_timing(device["root"]))
            time.sleep(0.15)
        worker = seen[-1]
        assert worker is not None, "the worker never started timing"
        timing_parent = int(Path(f"/proc/{worker}/stat").read_text().rpartition(")")[2].split()[1])
        time.sleep(1.0)
        (os.killpg if to_group else os.kill)(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "incomplete" in stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok" and row["round_sizes"][0] > 10 and len(row["samples_s"]) == sum(row["round_sizes"])
    # the process timing is the worker's child (flopsbench.case_process); the signal goes to the worker
    assert any(c["command"] == f"kill -INT {timing_parent}" for c in log(device, "ssh"))
    for pid in (worker, timing_parent):
        gone = not Path(f"/proc/{pid}").exists()
        assert gone or b"flopsbench.worker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert left_there(device) == []
