"""Devices as data (issue 15): the inventory file (flopsbench.devices) read key by key, hostile files
included; where it is looked for; the one-line errors of ``--on`` and ``--devices``; and
``flopsbench devices``, on a local device and on ssh "boards" reached by the fake ssh of
tests/fake_ssh (the venv's Python stands for the board's)."""

from __future__ import annotations

import json
import os
import shlex
import struct
import sys
from pathlib import Path

import numpy
import onnxruntime
import pytest

from flopsbench import busy
from flopsbench.cpu import allowed_cores
from flopsbench.devices import Device, InventoryError, default_path, find, load_inventory
from tests.test_cli import _assert_one_line_error, invoke, no_measuring  # noqa: F401 -- a fixture

FAKE_SSH = Path(__file__).resolve().parent / "fake_ssh"

GOOD = '''\
[devices.here]
transport = "local"
cores = [0]

[devices.pi4]
transport = "ssh"
host = "raspberrypi.local"
user = "pi"
port = 2222
python = "/usr/bin/python3"
kind = "arm"
cores = [2, 3]
'''


def inventory(tmp_path: Path, text: str, name: str = "devices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the inventory ---------------------------------------------------------------------------------

def test_a_good_inventory_with_its_defaults(tmp_path):
    devices = load_inventory(inventory(tmp_path, GOOD))
    assert list(devices) == ["here", "pi4"]
    assert devices["here"] == Device(name="here", transport="local", host=None, user=None, port=None,
                                     python="python3", kind="cpu", cores=(0,), runtime="torch", threads=1)
    pi4 = devices["pi4"]
    assert (pi4.host, pi4.user, pi4.port, pi4.python, pi4.kind) == ("raspberrypi.local", "pi", 2222, "/usr/bin/python3",
                                                                     "arm")
    assert (pi4.cores, pi4.runtime, pi4.threads) == ((2, 3), "onnxruntime", 2)  # arm's runtime, a thread per core
    assert pi4.ssh_target == "pi@raspberrypi.local"
    assert pi4.record()["cores"] == [2, 3] and json.loads(json.dumps(pi4.record())) == pi4.record()


def test_without_a_user_ssh_config_picks_it(tmp_path):
    devices = load_inventory(inventory(tmp_path, '[devices.b]\ntransport = "ssh"\nhost = "b"\nkind = "arm"\n'))
    assert devices["b"].ssh_target == "b" and devices["b"].port is None


def test_find_names_the_devices_there_are(tmp_path):
    path = inventory(tmp_path, GOOD)
    devices = load_inventory(path)
    assert find(devices, "pi4", path) is devices["pi4"]
    with pytest.raises(InventoryError, match=r"no device 'pi5' in .*devices.toml; it has here, pi4"):
        find(devices, "pi5", path)


SSH = '[devices.b]\ntransport = "ssh"\nhost = "b"\nkind = "arm"\n'
LOCAL = '[devices.b]\ntransport = "local"\n'
# (what the file says, what the one-line error must name)
HOSTILE = [
    (SSH.replace('"b"\nkind', '"-oProxyCommand=touch /tmp/x"\nkind'), "host '-oProxyCommand"),
    (SSH + 'user = "-oProxyCommand=touch /tmp/x"\n', "user '-oProxyCommand"),
    (SSH.replace('"b"\nkind', '"board one"\nkind'), "host 'board one'"),
    (SSH.replace('"b"\nkind', '"b\'oard"\nkind'), "host"),
    (SSH.replace('"b"\nkind', '"b\\"oard"\nkind'), "host"),
    (SSH.replace('"b"\nkind', '"b;touch x"\nkind'), "host 'b;touch x'"),
    (SSH.replace('"b"\nkind', '"b$(touch x)"\nkind'), "host"),
    (SSH.replace('"b"\nkind', '""\nkind'), "host must be a non-empty string"),
    (SSH.replace('"b"\nkind', '22\nkind'), "host must be a non-empty string"),
    (SSH + "hots = 'b'\n", "unknown key 'hots'"),
    (SSH + "port = true\n", "port"),
    (SSH + 'port = "22"\n', "port"),
    (SSH + "port = 70000\n", "port"),
    (SSH + "port = 0\n", "port"),
    (SSH + 'cores = "0"\n', "cores"),
    (SSH + "cores = []\n", "cores"),
    (SSH + "cores = [-1]\n", "cores"),
    (SSH + "cores = [0, 0]\n", "cores"),
    (SSH + "cores = [true]\n", "cores"),
    (SSH + "cores = [0.5]\n", "cores"),
    (SSH + "threads = 0\n", "threads"),
    (SSH + "cores = [0]\nthreads = 2\n", "threads"),
    (SSH + "threads = true\n", "threads"),
    ('[devices.b]\ntransport = "ssh"\nkind = "arm"\n', "needs a host"),
    (LOCAL + 'host = "b"\n', "host, user and port are for transport 'ssh'"),
    (LOCAL + "port = 22\n", "host, user and port are for transport 'ssh'"),
    (LOCAL + 'python = "python3"\n', "python is for transport 'ssh'"),
    (SSH + 'runtime = "torch"\n', "runtime 'onnxruntime'"),
    (LOCAL + 'kind = "cuda"\nruntime = "onnxruntime"\n', "runtime 'torch'"),
    (LOCAL.replace("local", "telnet"), "transport 'telnet' is not one of local, ssh"),
    (LOCAL + 'kind = "gpu"\n', "kind 'gpu' is not one of cpu, cuda, arm"),
    (LOCAL + 'runtime = "tvm"\n', "runtime 'tvm' is not one of torch, onnxruntime"),
    (SSH + 'python = ""\n', "python must be a non-empty string"),
    (SSH + "python = 3\n", "python must be a non-empty string"),
    ('[devices."a/b"]\ntransport = "local"\n', "device name"),
    ('[devices."a\\u001b[2Jb"]\ntransport = "local"\n', "device name"),
    ('[devices]\npi4 = "ssh"\n', "not a table"),
    ("", "no devices"),
    ("devices = []\n", "no devices"),
    ("[devices]\n", "no devices"),
    ("[devices.b\ntransport = 'local'\n", "not TOML"),
    ('[device.b]\ntransport = "local"\n', "unknown top-level key 'device'"),
]


@pytest.mark.parametrize("text, named", HOSTILE, ids=[named for _, named in HOSTILE])
def test_a_bad_inventory_is_one_line_naming_the_key(tmp_path, text, named):
    path = inventory(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert named in message and message.startswith(f"{path}: ")
    assert message.isprintable(), message  # one line, no control character from the file


@pytest.mark.parametrize("make, named", [
    (lambda folder: folder / "missing.toml", "no such file"),
    (lambda folder: folder, "cannot be read"),  # a directory
    (lambda folder: inventory(folder, "").with_suffix(".bin"), "cannot be read"),
], ids=["missing", "directory", "not UTF-8"])
def test_an_unreadable_inventory_is_one_line(tmp_path, make, named):
    (tmp_path / "devices.bin").write_bytes(b'\xff\xfe[devices.b]\ntransport = "local"\n')
    path = make(tmp_path)
    with pytest.raises(InventoryError, match=named) as caught:
        load_inventory(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_where_the_inventory_is_read_from(tmp_path, monkeypatch):
    """$FLOPSBENCH_DEVICES, else ./devices.toml, else ~/.config/flopsbench/devices.toml (--devices,
    before all of them, is load_inventory's argument: the CLI tests below give it)."""
    home, work = tmp_path / "home", tmp_path / "work"
    configured = home / ".config" / "flopsbench"
    configured.mkdir(parents=True)
    work.mkdir()
    inventory(configured, '[devices.from_home]\ntransport = "local"\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FLOPSBENCH_DEVICES", raising=False)
    monkeypatch.chdir(work)
    assert default_path() == configured / "devices.toml" and list(load_inventory()) == ["from_home"]
    inventory(work, '[devices.from_cwd]\ntransport = "local"\n')
    assert list(load_inventory()) == ["from_cwd"]
    monkeypatch.setenv("FLOPSBENCH_DEVICES", str(inventory(tmp_path, '[devices.from_env]\ntransport = "local"\n',
                                                          "env.toml")))
    assert list(load_inventory()) == ["from_env"]
    assert list(load_inventory(configured / "devices.toml")) == ["from_home"]


# --- `--on` and `--devices` for ops and model --------------------------------------------------------

@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No inventory anywhere: an empty cwd and HOME, no $FLOPSBENCH_DEVICES."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLOPSBENCH_DEVICES", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


ON_ERRORS = [
    ("--on pi5 --devices {inv}", "--on"),
    ("--on here", "--devices"),  # no inventory anywhere
    ("--on here --devices {tmp}/missing.toml", "--devices"),
    ("--on here --devices {bad}", "--devices"),
    ("--devices {inv}", "--devices"),
    ("--on here --devices {inv} --cores 0", "--cores"),
    ("--on here --devices {inv} --runtime torch", "--runtime"),
    ("--on here --devices {inv} --threads 2", "--threads"),
    ("--on here --devices {inv} --device cuda", "--device"),
]


@pytest.mark.parametrize("command", ["ops", "model fasternet_t0"])
@pytest.mark.parametrize("args, option", ON_ERRORS, ids=[a for a, _ in ON_ERRORS])
def test_on_errors_are_one_line_naming_the_option(no_measuring, nowhere, command, args, option):
    inv = inventory(nowhere, GOOD, "inv.toml")
    bad = inventory(nowhere, SSH + "port = true\n", "bad.toml")
    args = args.format(inv=inv, bad=bad, tmp=nowhere)
    _assert_one_line_error(invoke([*command.split(), *shlex.split(args)]), option)


def test_an_option_equal_to_its_default_beside_on_is_still_refused(no_measuring, nowhere):
    inv = inventory(nowhere, '[devices.two]\ntransport = "local"\ncores = [0, 1]\nthreads = 2\n')
    _assert_one_line_error(invoke(["ops", "--on", "two", "--devices", str(inv), "--threads", "1"]), "--threads")


def test_on_a_local_device_times_with_the_inventorys_settings(tmp_path):
    core = allowed_cores()[-1]
    inv = inventory(tmp_path, f'[devices.here]\ntransport = "local"\ncores = [{core}]\nruntime = "onnxruntime"\n')
    result = invoke(["ops", "--op", "pwconv", "--shape", "16x8x8", "--layers", "1", "--runs", "2", "--warmup", "0",
                     "--on", "here", "--devices", inv, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    execution, environment = report["execution"], report["environment"]
    assert (execution["runtime"], execution["cores"], execution["threads"]) == ("onnxruntime", [core], 1)
    assert environment["device_name"] == "here" and environment["device"]["cores"] == [core]
    (row,) = report["rows"]
    assert row["status"] == "ok" and row["affinity"]["all_within_cores"] is True


# --- `flopsbench devices` ------------------------------------------------------------------------------

@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """The fake ssh and scp on PATH; the "board"'s root (home/, tmp/, the logs) under tmp_path."""
    root = tmp_path / "board"
    for folder in ("home", "tmp"):
        (root / folder).mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{FAKE_SSH}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_ROOT", str(root))
    monkeypatch.delenv("FAKE_SSH_UNREACHABLE", raising=False)
    return root


def board(tmp_path: Path, python: str = sys.executable, core: int | None = None) -> Path:
    core = allowed_cores()[-1] if core is None else core
    return inventory(tmp_path, f'[devices.board]\ntransport = "ssh"\nhost = "board"\nuser = "pi"\n'
                               f'python = {json.dumps(python)}\nkind = "arm"\ncores = [{core}]\n')


def logged(root: Path, name: str) -> list[dict]:
    path = root / f"{name}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def left_on_the_board(root: Path) -> list[str]:
    """flopsbench's folders left in the board's TMPDIR (onnxruntime keeps a '.ses' file there)."""
    return sorted(path.name for path in (root / "tmp").iterdir() if path.name.startswith("flopsbench"))


def test_a_local_device_is_listed_and_checked(tmp_path):
    core = allowed_cores()[-1]
    inv = inventory(tmp_path, f'[devices.here]\ntransport = "local"\ncores = [{core}]\nruntime = "onnxruntime"\n')
    result = invoke(["devices", "--devices", inv])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"here: local, cpu, onnxruntime, cores {core}, 1 thread(s)"
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert list(fields) == ["machine", "python", "onnxruntime", "numpy", "pinned"]
    assert fields["machine"].startswith(f"{os.uname().machine}, {struct.calcsize('P') * 8}-bit userland, ")
    assert fields["python"] == ".".join(map(str, sys.version_info[:3]))
    assert fields["onnxruntime"] == onnxruntime.__version__ and fields["numpy"] == numpy.__version__
    assert fields["pinned"] == "cores idle" or fields["pinned"].startswith(f"cores busy: {core} (")


def test_a_busy_pinned_core_is_shown_with_its_load(tmp_path, monkeypatch):
    monkeypatch.setattr(busy, "pinned_core_load", lambda cores: {"window_s": 0.2, "cores": list(cores),
                                                                  "load": {str(cores[0]): 0.93}, "busy": [cores[0]],
                                                                  "idle": []})
    inv = inventory(tmp_path, '[devices.here]\ntransport = "local"\ncores = [0]\n')
    result = invoke(["devices", "--devices", inv])
    assert result.exit_code == 0, result.output
    assert "  pinned cores busy: 0 (93%)" in result.stdout.splitlines()


def test_a_local_device_on_cores_this_process_may_not_use_fails(tmp_path):
    inv = inventory(tmp_path, '[devices.here]\ntransport = "local"\ncores = [4095]\n')
    result = invoke(["devices", "--devices", inv])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith("  unreachable: here: cores [4095] are not among")


def test_json_lists_each_device_with_its_probe(tmp_path):
    inv = inventory(tmp_path, '[devices.here]\ntransport = "local"\n')
    result = invoke(["devices", "--devices", inv, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inventory"] == str(inv)
    (record,) = data["devices"]
    assert set(record) == {"device", "probe"} and record["device"] == load_inventory(inv)["here"].record()
    assert set(record["probe"]) == {"environment", "userland_bits", "numpy", "pinned_core_load"}
    assert record["probe"]["userland_bits"] == struct.calcsize("P") * 8 and record["probe"]["pinned_core_load"]["cores"] == [0]
    assert record["probe"]["environment"]["machine"] == os.uname().machine


def test_no_check_lists_the_inventory_without_reaching_it(tmp_path, fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_UNREACHABLE", "1")
    inv = inventory(tmp_path, GOOD)
    table = invoke(["devices", "--devices", inv, "--no-check"])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines() == ["here: local, cpu, torch, cores 0, 1 thread(s)",
                                         "pi4: ssh pi@raspberrypi.local:2222, arm, onnxruntime, cores 2,3, 2 thread(s)"]
    listed = json.loads(invoke(["devices", "--devices", inv, "--no-check", "--format", "json"]).stdout)
    assert listed["devices"] == [{"device": device.record()} for device in load_inventory(inv).values()]
    assert logged(fake_ssh, "ssh") == [] and logged(fake_ssh, "scp") == []


def test_the_inventory_comes_from_the_environment_unless_devices_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSBENCH_DEVICES", str(inventory(tmp_path, GOOD)))
    listed = json.loads(invoke(["devices", "--no-check", "--format", "json"]).stdout)
    assert [record["device"]["name"] for record in listed["devices"]] == ["here", "pi4"]
    other = inventory(tmp_path, '[devices.other]\ntransport = "local"\n', "other.toml")
    listed = json.loads(invoke(["devices", "--devices", other, "--no-check", "--format", "json"]).stdout)
    assert listed["inventory"] == str(other) and [r["device"]["name"] for r in listed["devices"]] == ["other"]


def test_a_bad_inventory_or_format_is_a_one_line_error(tmp_path, nowhere):
    _assert_one_line_error(invoke(["devices"]), "--devices")
    _assert_one_line_error(invoke(["devices", "--devices", inventory(tmp_path, SSH + "port = 0\n")]), "--devices")
    _assert_one_line_error(invoke(["devices", "--devices", inventory(tmp_path, GOOD), "--format", "xml"]), "--format")


def test_an_ssh_device_is_checked_there_and_its_directory_removed(tmp_path, fake_ssh):
    core = allowed_cores()[-1]
    result = invoke(["devices", "--devices", board(tmp_path, core=core)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"board: ssh pi@board, arm, onnxruntime, cores {core}, 1 thread(s)"
    assert [line.split()[0] for line in lines[1:]] == ["machine", "python", "onnxruntime", "numpy", "pinned"]
    commands = [call["command"] for call in logged(fake_ssh, "ssh")]
    assert all(call["target"] == "pi@board" for call in logged(fake_ssh, "ssh"))
    assert f"-m flopsbench.probe --cores {core}" in commands[1]
    (shipped,) = logged(fake_ssh, "scp")
    assert shipped["destination"].startswith(f"pi@board:{fake_ssh / 'tmp'}/flopsbench.")
    assert commands[-1].startswith("rm -rf -- ") and left_on_the_board(fake_ssh) == []


def test_an_unreachable_device_says_what_ssh_said(tmp_path, fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_UNREACHABLE", "1")
    inv = inventory(tmp_path, '[devices.here]\ntransport = "local"\n\n' + board(tmp_path).read_text(), "both.toml")
    result = invoke(["devices", "--devices", inv])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("here: local") and lines[1].split()[0] == "machine"  # the others are still checked
    unreachable = lines[lines.index(next(line for line in lines if line.startswith("board: "))) + 1]
    assert unreachable == ("  unreachable: board: making a temporary directory: ssh: connect to host pi@board "
                           "port 22: Connection refused")
    data = json.loads(invoke(["devices", "--devices", inv, "--format", "json"]).stdout)
    assert "Connection refused" in data["devices"][1]["error"] and "probe" not in data["devices"][1]


def test_a_hostile_python_path_is_shown_escaped(tmp_path, fake_ssh):
    """The inventory's python reaches the terminal through the device's shell ("... not found"):
    escaped, never as the terminal sequence it is."""
    inv = board(tmp_path, python="/nowhere/\x1b]0;pwn\x07")
    result = invoke(["devices", "--devices", inv])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "reading its environment" in result.stdout and "/nowhere/\\x1b]0;pwn\\x07" in result.stdout
    as_json = invoke(["devices", "--devices", inv, "--format", "json", "--no-check"])
    assert "\x1b" not in as_json.output and json.loads(as_json.stdout)["devices"][0]["device"]["python"].endswith(
        "\x1b]0;pwn\x07")
    assert left_on_the_board(fake_ssh) == []


def answering(tmp_path: Path, record: dict) -> str:
    """A device "Python" that answers the probe with ``record`` (what a hostile board may say)."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(json.dumps(record))}\n")
    script.chmod(0o755)
    return str(script)


HOSTILE_PROBE = {"environment": {"machine": "aarch64\x1b]0;pwn\x07", "cpu_model": ["Cortex\x1b[2J"], "python": 3,
                                 "libraries": {"onnxruntime": "1.0\r\n\x1b[31mfake"}},
                 "userland_bits": "64\u202e", "numpy": {"v": "\x9b1m"},
                 "pinned_core_load": {"load": {"1": 0.5}, "busy": [1], "idle": []}}


def test_what_a_device_answers_is_shown_escaped(tmp_path, fake_ssh):
    result = invoke(["devices", "--devices", board(tmp_path, python=answering(tmp_path, HOSTILE_PROBE), core=1)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x9b" not in result.stdout and "\u202e" not in result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and lines[1].startswith("  machine      aarch64\\x1b]0;pwn\\x07, 64\\u202e-bit userland")
    assert lines[-1] == "  pinned cores busy: 1 (50%)"


def test_a_device_answering_nonsense_loads_is_not_a_traceback(tmp_path, fake_ssh):
    answer = {**HOSTILE_PROBE, "pinned_core_load": {"load": {"1": "lots"}, "busy": [1]}}
    result = invoke(["devices", "--devices", board(tmp_path, python=answering(tmp_path, answer), core=1)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "pinned cores" in result.stdout
