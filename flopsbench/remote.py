"""Workers on another machine, reached by the system's ``ssh`` and ``scp`` (the user's keys, agent
and ~/.ssh/config apply; BatchMode: never a password prompt, nor a password on a command line).

Counting and export stay on this machine. The device gets a temporary directory (``mktemp -d``)
holding the torch-free modules the worker needs (REMOTE_MODULES: the worker, the onnxruntime
backend, the rounds' loop, the probe) and each case's ONNX file, so that nothing needs installing
there beyond onnxruntime and numpy. Each job then runs as on this machine, in a fresh
``python -m flopsbench.worker`` started over ssh: the job on its stdin, its events on stdout.

- Ctrl-C, SIGTERM or SIGHUP: ssh does not pass signals on without a terminal, so the worker's own
  pid (its ``ready`` event) is sent SIGINT over a second ssh connection; it ends its round and
  sends the samples it took, as a local worker does. A second signal kills it there.
- A lost connection (ssh's exit code 255; ServerAlive notices a silent one within ~15 s) ends the
  job: the rows it did not finish become errors saying so, the samples taken are kept.
- The directory is removed when the run ends (``close``), interrupted or not."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Sequence

import flopsbench
from flopsbench.checksum import sha256
from flopsbench.devices import Device
from flopsbench.transport import FreshProcesses, OnEvent, worker_arguments

# What `python -m flopsbench.worker` imports for an ONNX job, and the probe (tests/test_remote.py runs
# them from a directory holding these alone, without torch: a module missing here fails it).
REMOTE_MODULES = (
    "__init__", "allocator", "backends/__init__", "backends/ort", "board", "bootstrap", "breakdown", "busy",
    "case_process", "checksum", "constants", "cpu", "energy", "environment", "ort_runtime", "output", "peak_memory",
    "plugins", "probe", "process_exit", "report", "rounds", "sampling", "signals", "spec", "stats", "timing",
    "validation", "worker",
)
SSH_OPTIONS = ("-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")
LOST = 255  # ssh's exit code when the connection failed or dropped
CONTROL_TIMEOUT_S = 60  # mktemp, kill, rm: short commands; a board that takes longer is unreachable
_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9_./-]+/flopsbench\.[A-Za-z0-9]+$")  # what mktemp -d answers


class RemoteError(RuntimeError):
    """The device could not be reached or prepared; the message says which step and what ssh said."""


class SshWorkers(FreshProcesses):
    """FreshProcesses on ``device`` (an inventory entry with transport 'ssh')."""

    def __init__(self, device: Device, preload: Sequence[str] = ("flopsbench.backends.ort",)):
        self.device, self.preload = device, tuple(preload)
        self.directory: str | None = None
        self.shipped: dict[str, str] = {}  # local ONNX path -> its path on the device
        self.failure: str | None = None  # why the last job could not be sent
        super().__init__(preload)  # self.command is set once the directory exists (connect)
        # A terminal's Ctrl-C reaches the whole foreground group: ssh would die of it, and the samples
        # with it. In a session of its own it does not; the signal is passed on as the worker's pid.
        self.popen_options = {"start_new_session": True}

    # -- ssh and scp -------------------------------------------------------------------------------
    def ssh(self, remote_command: str) -> list[str]:
        port = ["-p", str(self.device.port)] if self.device.port else []
        return ["ssh", *SSH_OPTIONS, *port, "--", self.device.ssh_target, remote_command]

    def control(self, remote_command: str, step: str) -> str:
        """Run a short command on the device; its stdout, or RemoteError naming ``step``."""
        try:
            done = subprocess.run(self.ssh(remote_command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=CONTROL_TIMEOUT_S, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.device.name}: {step}: no answer in {CONTROL_TIMEOUT_S} s") from None
        except OSError as exc:
            raise RemoteError(f"{self.device.name}: {step}: cannot run ssh ({exc.strerror})") from None
        if done.returncode != 0:
            said = " ".join(done.stderr.split())[-300:] or f"exit code {done.returncode}"
            raise RemoteError(f"{self.device.name}: {step}: {said}")
        return done.stdout

    def copy(self, sources: Sequence[Path], destination: str, step: str) -> None:
        port = ["-P", str(self.device.port)] if self.device.port else []
        command = ["scp", "-q", "-r", "-o", "BatchMode=yes", *port, "--", *map(str, sources),
                   f"{self.device.ssh_target}:{destination}"]  # no spaces or quotes: _REMOTE_DIR
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=CONTROL_TIMEOUT_S * 10, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.device.name}: {step}: scp took over {CONTROL_TIMEOUT_S * 10} s") from None
        except OSError as exc:
            raise RemoteError(f"{self.device.name}: {step}: cannot run scp ({exc.strerror})") from None
        if done.returncode != 0:
            raise RemoteError(f"{self.device.name}: {step}: {' '.join(done.stderr.split())[-300:] or done.returncode}")

    # -- the device's directory ---------------------------------------------------------------------
    def connect(self) -> None:
        """Make the device's directory and ship the worker's modules there (once)."""
        if self.directory is not None:
            return
        answer = self.control('d=$(mktemp -d "${TMPDIR:-/tmp}/flopsbench.XXXXXXXX") && mkdir "$d/onnx" && echo "$d"',
                              "making a temporary directory").strip()
        if not _REMOTE_DIR.match(answer):
            raise RemoteError(f"{self.device.name}: making a temporary directory: unexpected answer {answer[:80]!r}")
        self.directory = answer
        with tempfile.TemporaryDirectory(prefix="flopsbench-ship-") as staging:
            self.copy([stage_modules(Path(staging))], answer, "shipping the worker")
        # TMPDIR there too: what the worker's libraries leave in it (importing onnxruntime writes a
        # '.ses' file) goes when the directory does
        in_directory = (f"cd {shlex.quote(answer)} && export TMPDIR={shlex.quote(answer)} && "
                        f"exec {shlex.quote(self.device.python)}")
        self.command = self.ssh(f"{in_directory} -m flopsbench.worker {shlex.join(worker_arguments(self.preload))}")
        self.probe_command = f"{in_directory} -m flopsbench.probe --cores {','.join(map(str, self.device.cores))}"

    def environment(self) -> dict:
        """The device's own record (flopsbench.probe), read there."""
        self.connect()
        answer = self.control(self.probe_command, "reading its environment")
        try:
            record = json.loads(answer.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RemoteError(f"{self.device.name}: reading its environment: not the probe's answer") from None
        if not isinstance(record, dict):
            raise RemoteError(f"{self.device.name}: reading its environment: not the probe's answer")
        return record

    def ship(self, job: dict) -> dict:
        """``job`` with each case's ONNX file on the device (copied once per run), its paths the device's."""
        cases = []
        for case in job.get("cases", []):
            local = case.get("onnx")
            if isinstance(local, str) and local not in self.shipped:
                folder = f"{self.directory}/onnx/{sha256(Path(local))[:16]}"
                self.control(f"mkdir -p {shlex.quote(folder)}", "shipping an ONNX file")
                self.copy(onnx_files(Path(local)), folder, f"shipping {Path(local).name}")
                self.shipped[local] = str(PurePosixPath(folder) / Path(local).name)
            cases.append({**case, "onnx": self.shipped[local]} if isinstance(local, str) else case)
        return {**job, "cases": cases}

    # -- the transport --------------------------------------------------------------------------------
    def start(self, count: int = 1) -> int:
        self.connect()
        return super().start(count)

    def run(self, job: dict, on_event: OnEvent) -> int | None:
        try:
            self.connect()
            job = self.ship(job)
        except RemoteError as exc:  # the connection went while the run goes on: its cases fail, saying why
            self.failure = str(exc)
            return LOST
        return super().run(job, on_event)

    def interrupt(self, process: subprocess.Popen) -> None:
        self._signal_there(process, "INT")

    def kill(self, process: subprocess.Popen) -> None:
        self._signal_there(process, "KILL")
        process.kill()

    def _signal_there(self, process: subprocess.Popen, name: str) -> None:
        pid = self.ready.get(process)
        if pid is None:  # it never said its pid: ending ssh is all there is
            process.send_signal(signal.SIGINT if name == "INT" else signal.SIGKILL)
            return
        try:
            self.control(f"kill -{name} {int(pid)}", f"passing SIG{name} on")
        except RemoteError:
            process.kill()  # unreachable: the connection ends, the rows left become errors

    def ended(self, exit_code: int | None) -> str:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            return failure
        if exit_code == LOST:
            return f"the ssh connection to {self.device.name} was lost (ssh exit code 255) before the worker answered"
        return f"the worker on {self.device.name} ended (exit code {exit_code}) before answering"

    def close(self) -> None:
        super().close()
        if self.directory is not None:
            directory, self.directory = self.directory, None
            try:
                self.control(f"rm -rf -- {shlex.quote(directory)}", "removing its temporary directory")
            except RemoteError:
                pass  # unreachable now; the report's environment names the directory left behind


def stage_modules(staging: Path) -> Path:
    """A copy of the worker's modules (REMOTE_MODULES) under ``staging``/flopsbench."""
    package = Path(flopsbench.__file__).parent
    for module in REMOTE_MODULES:
        target = staging / "flopsbench" / f"{module}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((package / f"{module}.py").read_bytes())
    return staging / "flopsbench"


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and the external data files it names (beside it: onnx_export writes them so)."""
    files = [path]
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 -- the worker there says what is wrong with the file
        return files
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                data = path.parent / entry.value
                if data.parent == path.parent and data.is_file() and data not in files:
                    files.append(data)
    return files
