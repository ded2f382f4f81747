"""`flopsbench sweep PLAN.toml`: a matrix of workloads × devices, one merged report (docs/sweep.md).

- **The plan** (TOML) names the inventory (flopsbench.devices) and lists cases: a command (``ops``
  or ``model``), its operators and shapes or its models, options for every job, and the devices.
  Everything in it is checked before anything runs; each failure is one PlanError line.
- **Jobs**: one per (device, operator and shape) or (device, model), each a fresh
  ``flopsbench ops|model … --on DEVICE --format json -o FILE`` process. A job's *spec hash* is the
  sha256 of the canonical JSON of its command, case, options and the device's inventory record;
  its report is ``OUT/<hash>.json``, so a sweep run again skips the jobs whose report is there,
  complete and without a failed row (resumable).
- **Engines** run the jobs (flopsbench.sweep_ray: on Ray, a device a resource of capacity 1); this
  module runs one job (``run_job``, the body of a Ray task), keeps each job's record and merges
  the reports (flopsbench.merge) into ``OUT/sweep-merged.json`` and ``.md``; ``OUT/sweep.json`` holds
  the plan and every job's device, case, hash, start, end, host, status and stderr's tail.
- **Quiet on the timed cores**: ``CorePlan`` keeps the coordinator (and so Ray's daemons, which
  inherit its affinity) off the cores that devices on this machine time on, and gives each job
  the free cores plus its own device's.

Torch-free at import: Ray's workers import this module to run jobs."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

from flopsbench.devices import Device, InventoryError, load_inventory
from flopsbench.report import MAX_REPORT_BYTES
from flopsbench.tomlfile import read_toml


COMMANDS = ("ops", "model")
PLAN_KEYS = ("devices", "cases")
CASE_KEYS = {"ops": ("command", "ops", "shapes", "options", "devices"),
             "model": ("command", "models", "options", "devices")}
NAMES_KEY = {"ops": "ops", "model": "models"}
# Options every job gets from the sweep itself: a plan giving them would fight it.
SWEEP_OPTIONS = ("--on", "--devices", "--op", "--shape", "--format", "-o", "--output", "--save", "--results-dir")
MAX_PLAN_BYTES = 1 << 20  # a plan is a few hundred lines
MAX_JOBS = 10_000
STDERR_TAIL_LINES = 20
POLL_S = 0.1  # how often a job is checked: a Ray cancel gets in between (it raises in Python code only)
STOP_S = 60.0  # an interrupted job's time to end its round and write its report, then it is killed
SWEEP_FILE, MERGED_STEM = "sweep.json", "sweep-merged"
LOOPBACK_HOSTS = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class PlanError(ValueError):
    """The plan cannot be run as written; the message names the file, the case and the key."""


# --- the plan ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One ``[[cases]]`` entry: ``names`` are its operators (ops) or models (model)."""

    command: str
    names: tuple[str, ...]
    devices: tuple[str, ...]
    shapes: tuple[str, ...] = ()  # ops: each a canonical CxHxW
    options: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        shapes = {"shapes": list(self.shapes)} if self.command == "ops" else {}
        return {"command": self.command, NAMES_KEY[self.command]: list(self.names), **shapes,
                "options": list(self.options), "devices": list(self.devices)}


@dataclass(frozen=True)
class Job:
    """One run of one case on one device."""

    command: str
    name: str  # the operator or the model
    shape: str | None  # ops: CxHxW
    options: tuple[str, ...]
    device: Device

    @property
    def case(self) -> dict:
        return {"op": self.name, "shape": self.shape} if self.command == "ops" else {"model": self.name}

    @property
    def spec(self) -> dict:
        """What the job's result depends on: its command, case, options and the device's record."""
        return {"command": self.command, "case": self.case, "options": list(self.options),
                "device": self.device.record()}

    @property
    def hash(self) -> str:
        """The spec hash: sha256 of the spec's canonical JSON (sorted keys, no spaces, UTF-8)."""
        canonical = json.dumps(self.spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def file(self) -> str:
        return f"{self.hash}.json"

    @property
    def label(self) -> str:
        """'pconv 96x56x56 on local0'."""
        what = f"{self.name} {self.shape}" if self.command == "ops" else self.name
        return f"{what} on {self.device.name}"

    def args(self, inventory: str, output: str) -> list[str]:
        """The flopsbench command line (after ``python -m flopsbench``) that runs the job."""
        what = ["--op", self.name, "--shape", self.shape] if self.command == "ops" else [self.name]
        return [self.command, *what, "--on", self.device.name, "--devices", inventory, *self.options,
                "--format", "json", "-o", output]


@dataclass(frozen=True)
class Plan:
    path: Path
    inventory_path: Path
    inventory_text: str  # sent to each job, which may run on another machine
    inventory: dict[str, Device]
    cases: tuple[Case, ...]

    def jobs(self) -> list[Job]:
        """Every case's jobs, in the plan's order; one job where two cases ask for the same."""
        jobs: dict[str, Job] = {}
        for case in self.cases:
            for name in case.names:
                for shape in case.shapes or (None,):
                    for device in case.devices:
                        job = Job(case.command, name, shape, case.options, self.inventory[device])
                        jobs.setdefault(job.hash, job)
        return list(jobs.values())

    @property
    def devices(self) -> list[Device]:
        """The devices the plan's cases use, in the inventory's order."""
        used = {name for case in self.cases for name in case.devices}
        return [device for name, device in self.inventory.items() if name in used]

    def to_dict(self) -> dict:
        return {"path": str(self.path), "devices": str(self.inventory_path),
                "cases": [case.to_dict() for case in self.cases]}


def load_plan(path: Path | str, check_options: Callable[[Case, str], None] | None = None) -> Plan:
    """The plan at ``path``, every key, type and name in it checked (PlanError, one line):
    its inventory (relative to the plan's folder), each case's devices, operators or models, and
    shapes. ``check_options(case, where)`` checks a case's options (the CLI parses them as its
    command would: ``flopsbench.cli.sweep_cmd``)."""
    path = Path(path)
    data = read_toml(path, PlanError, "write a plan (see docs/sweep.md)", MAX_PLAN_BYTES)
    unknown = sorted(set(data) - set(PLAN_KEYS))
    if unknown:
        raise PlanError(f"{path}: unknown key {unknown[0]!r}; a plan has {' and '.join(PLAN_KEYS)}")
    inventory_name = data.get("devices")
    if not isinstance(inventory_name, str) or not inventory_name.strip():
        raise PlanError(f"{path}: devices must name the inventory file, e.g. devices = \"devices.toml\"")
    inventory_path = path.parent / inventory_name
    try:
        inventory = load_inventory(inventory_path)
        inventory_text = inventory_path.read_text(encoding="utf-8")
    except (InventoryError, OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: devices: {exc}") from None
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise PlanError(f"{path}: no cases; add a [[cases]] table with command, ops or models, and devices")
    parsed = tuple(_case(entry, f"{path}: cases[{i}]", inventory, check_options) for i, entry in enumerate(cases))
    plan = Plan(path, inventory_path, inventory_text, inventory, parsed)
    count = sum(len(c.names) * max(len(c.shapes), 1) * len(c.devices) for c in parsed)
    if count > MAX_JOBS:
        raise PlanError(f"{path}: {count:,} jobs, more than {MAX_JOBS:,}; split the plan")
    return plan


def _case(entry: object, where: str, inventory: dict[str, Device],
          check_options: Callable[[Case, str], None] | None) -> Case:
    if not isinstance(entry, dict):
        raise PlanError(f"{where}: not a table; write [[cases]] with its keys")
    command = entry.get("command")
    if command not in COMMANDS:
        raise PlanError(f"{where}: command must be {' or '.join(map(repr, COMMANDS))}")
    unknown = sorted(set(entry) - set(CASE_KEYS[command]))
    if unknown:
        raise PlanError(f"{where}: unknown key {unknown[0]!r} for command {command!r}; its keys are "
                        f"{', '.join(CASE_KEYS[command])}")
    key = NAMES_KEY[command]
    names = _strings(entry, key, where, required=True)
    devices = _strings(entry, "devices", where, required=True)
    for device in devices:
        if device not in inventory:
            raise PlanError(f"{where}: devices: no device {device!r} in the inventory; it has "
                            f"{', '.join(sorted(inventory))}")
    options = _strings(entry, "options", where, required=False, empty=True)
    shapes = _shapes(_strings(entry, "shapes", where, required=False), f"{where}: shapes") if command == "ops" else ()
    case = Case(command, names, devices, shapes, options)
    if check_options is not None:
        check_options(case, f"{where}: options")  # first: a --plugin among them registers names
    _check_names(command, names, f"{where}: {key}")
    return case


def _strings(entry: dict, key: str, where: str, required: bool, empty: bool = False) -> tuple[str, ...]:
    """A list of strings (each non-empty unless ``empty``), duplicates dropped, in order."""
    if key not in entry:
        if required:
            raise PlanError(f"{where}: {key} is missing; give a list of strings")
        return ()
    value = entry[key]
    if (not isinstance(value, list) or not value or any(not isinstance(v, str) for v in value)
            or (not empty and any(not v.strip() for v in value))):
        raise PlanError(f"{where}: {key} must be a non-empty list of {'' if empty else 'non-empty '}strings")
    return tuple(dict.fromkeys(value))


def _shapes(texts: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Each shape as CxHxW (its canonical text, so that the spec hash does not see spelling);
    none: Table 1's four."""
    from flopsbench.spec import TABLE1_SHAPES, Shape

    if not texts:
        return tuple(str(shape) for shape in TABLE1_SHAPES)
    try:
        return tuple(dict.fromkeys(str(Shape.parse(text)) for text in texts))
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}; give C, H and W as positive integers, e.g. \"96x56x56\"") from None


def _check_names(command: str, names: Iterable[str], where: str) -> None:
    import flopsbench_zoo
    from flopsbench_zoo.baselines import resolve_model

    for name in names:
        if command == "ops" and name not in flopsbench_zoo.list_operators():
            raise PlanError(f"{where}: unknown operator {name!r}; choose from "
                            f"{', '.join(flopsbench_zoo.list_operators())} (see 'flopsbench list')")
        if command == "model":
            try:
                resolve_model(name)
            except KeyError as exc:
                raise PlanError(f"{where}: {exc.args[0] if exc.args else name}") from None


# --- resuming ---------------------------------------------------------------------------------------------

def read_report(path: Path):
    """The flopsbench report in ``path``, or None where there is none this version reads (no file,
    not JSON, a bad, foreign or newer report: report.read_report_file trusts nothing in it)."""
    from flopsbench.report import read_report_file

    if not path.is_file():  # nor a FIFO, which reading would wait on
        return None
    try:
        return read_report_file(path)
    except ValueError:  # ReportFileError, schema_versions.NewerSchemaError
        return None


def finished(path: Path) -> bool:
    """Whether ``path`` holds a complete report with no failed row: its job need not run again."""
    report = read_report(path)
    return report is not None and report.exit_status() == 0


# --- the cores --------------------------------------------------------------------------------------------

def on_this_machine(device: Device) -> bool:
    """A local device, or one reached by ssh at a loopback address or this host's name."""
    if device.transport == "local":
        return True
    host = str(device.host).strip("[]").lower()
    if host in LOOPBACK_HOSTS or host == socket.gethostname().lower():
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CorePlan:
    """Where the sweep's processes run on this machine. ``timed``: the cores devices on this
    machine time on; ``coordinator``: the others (all, ``shared``, where none is left), for the
    coordinator and Ray's daemons; a job gets those plus its own device's cores."""

    allowed: tuple[int, ...]
    timed: tuple[int, ...]
    coordinator: tuple[int, ...]
    shared: bool

    def for_job(self, device: Device) -> tuple[int, ...]:
        own = set(device.cores) & set(self.allowed) if on_this_machine(device) else set()
        return tuple(sorted(set(self.coordinator) | own))

    def to_dict(self) -> dict:
        return {"allowed": list(self.allowed), "timed": list(self.timed), "coordinator": list(self.coordinator),
                "shared": self.shared}


def plan_cores(devices: Iterable[Device], allowed: Iterable[int]) -> CorePlan:
    allowed = tuple(sorted(allowed))
    timed = tuple(sorted({core for d in devices if on_this_machine(d) for core in d.cores} & set(allowed)))
    free = tuple(core for core in allowed if core not in timed)
    return CorePlan(allowed, timed, free or allowed, shared=not free)


def core_list(cores: Iterable[int]) -> str:
    return ",".join(map(str, cores))


# --- one job ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Launch:
    """What a worker (of any machine) needs to run a job: the job, the inventory's text, the cores
    the job may use (None: as the worker's), its environment (None: the worker's, less what Ray
    adds), its working folder if there, and the program (default: this Python's flopsbench)."""

    job: Job
    inventory_text: str
    affinity: tuple[int, ...] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    program: tuple[str, ...] | None = None


def run_job(launch: Launch) -> dict:
    """Run one job here as a subprocess, in its own session: its report is written into a
    temporary folder and returned as text (the coordinator may be another machine). A
    KeyboardInterrupt (Ray's cancel) passes Ctrl-C on to the job, which keeps its rows and writes
    its report marked incomplete; it is killed after STOP_S. Returns the record: status ('ok',
    'failed', 'interrupted', or 'cancelled' before it started), returncode, started_unix_s,
    ended_unix_s, host, stderr_tail, report."""
    record = {"host": socket.gethostname(), "started_unix_s": time.time(), "returncode": None, "report": None}
    with tempfile.TemporaryDirectory(prefix="flopsbench-sweep-") as tmp:
        inventory, report = Path(tmp, "devices.toml"), Path(tmp, "report.json")
        inventory.write_text(launch.inventory_text, encoding="utf-8")
        argv = [*(launch.program or (sys.executable, "-m", "flopsbench")), *launch.job.args(str(inventory),
                                                                                              str(report))]
        with open(Path(tmp, "stderr"), "w+b") as stderr:
            process = None
            try:
                process = _spawn(argv, stderr, launch)
                while process.poll() is None:
                    time.sleep(POLL_S)
                interrupted = False
            except OSError as exc:
                return record | {"status": "failed", "ended_unix_s": time.time(),
                                 "stderr_tail": f"cannot start {argv[0]}: {exc.strerror or exc}"}
            except KeyboardInterrupt:
                if process is None:  # cancelled before the job started
                    return record | {"status": "cancelled", "ended_unix_s": time.time(), "stderr_tail": ""}
                _stop(process)
                interrupted = True
            record["ended_unix_s"] = time.time()
            record["returncode"] = process.returncode
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 64 * 1024))
            lines = stderr.read().decode("utf-8", "replace").splitlines()[-STDERR_TAIL_LINES:]
        record["stderr_tail"] = "\n".join(lines)
        record["status"] = "interrupted" if interrupted else "ok" if process.returncode == 0 else "failed"
        if report.is_file() and report.stat().st_size <= MAX_REPORT_BYTES:
            record["report"] = report.read_text(encoding="utf-8", errors="replace")
    return record


def _spawn(argv: list[str], stderr, launch: Launch) -> subprocess.Popen:
    """Start the job with the affinity and signal mask it needs: a child inherits the calling
    thread's, which are set for the start and restored (Ray's workers block SIGINT, which the job
    must hear when it is interrupted)."""
    saved_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    saved_affinity = os.sched_getaffinity(0)
    try:
        if launch.affinity:
            try:
                os.sched_setaffinity(0, launch.affinity)
            except OSError:
                pass  # cores this machine does not have: the job says so itself
        cwd = launch.cwd if launch.cwd and os.path.isdir(launch.cwd) else None
        env = launch.env if launch.env is not None else _without_ray(os.environ)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd,
                                env=env, start_new_session=True)
    finally:
        os.sched_setaffinity(0, saved_affinity)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)


def _without_ray(environ) -> dict[str, str]:
    """A Ray worker's environment without what Ray sets for its own tasks (OMP_NUM_THREADS=1 among it)."""
    added = ("OMP_NUM_THREADS", "SPT_NOENV", "PYTHONBREAKPOINT")
    return {key: value for key, value in environ.items() if not key.startswith("RAY_") and key not in added}


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C passed on to the job; killed if it has not ended after STOP_S or a second interrupt."""
    _signal_group(process, signal.SIGINT)
    deadline = time.monotonic() + STOP_S
    try:
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass  # a second cancel: no more waiting
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the job and its timing workers
    except ProcessLookupError:
        pass


# --- the sweep -------------------------------------------------------------------------------------------

class Engine(Protocol):
    """Runs launches, calling ``done(launch, record)`` (run_job's record) as each ends. On
    KeyboardInterrupt it cancels the rest, reports the jobs that ended meanwhile, and re-raises."""

    def run(self, launches: list[Launch], done: Callable[[Launch, dict], None]) -> None: ...

    def describe(self) -> dict: ...


@dataclass
class Sweep:
    """A sweep's record, written to OUT/sweep.json as it runs."""

    plan: Plan
    out: Path
    jobs: list[Job]
    records: dict[str, dict] = field(default_factory=dict)  # by spec hash
    engine: dict = field(default_factory=dict)
    cores: dict | None = None
    started_unix_s: float = field(default_factory=time.time)
    ended_unix_s: float | None = None
    complete: bool = False
    merged: dict = field(default_factory=dict)  # view -> file name, or error -> why there is none
    merged_report: object = None  # flopsbench.merge.Merged, once merged

    def count(self, *statuses: str) -> int:
        return sum(record["status"] in statuses for record in self.records.values())

    @property
    def exit_status(self) -> int:
        """130 interrupted, 1 a job failed, else 0."""
        if not self.complete:
            return 130
        return 1 if self.count("failed", "interrupted") else 0

    def to_dict(self) -> dict:
        from flopsbench import __version__

        return {"schema": "flopsbench.sweep", "schema_version": 1, "tool_version": __version__,
                "plan": self.plan.to_dict(), "inventory": {d.name: d.record() for d in self.plan.devices},
                "engine": self.engine, "cores": self.cores, "started_unix_s": self.started_unix_s,
                "ended_unix_s": self.ended_unix_s, "complete": self.complete, "merged": self.merged,
                "jobs": [self.records[job.hash] for job in self.jobs]}

    def save(self) -> None:
        from flopsbench.output import write_text

        write_text(self.out / SWEEP_FILE, json.dumps(self.to_dict(), indent=1) + "\n")


def start(plan: Plan, out: Path) -> Sweep:
    """The sweep's jobs, each 'skipped' whose report in ``out`` is finished already, else 'pending'."""
    sweep = Sweep(plan, out, plan.jobs())
    earlier = _earlier_runs(out / SWEEP_FILE)
    for job in sweep.jobs:
        done = finished(out / job.file)
        sweep.records[job.hash] = {"device": job.device.name, "command": job.command, "case": job.case,
                                   "options": list(job.options), "hash": job.hash,
                                   "file": job.file if done else None, "status": "skipped" if done else "pending",
                                   "returncode": None, "started_unix_s": None, "ended_unix_s": None, "host": None,
                                   "stderr_tail": None}
        if done and job.hash in earlier:  # when and where the skipped job ran, as the last sweep recorded it
            sweep.records[job.hash].update(earlier[job.hash])
    return sweep


def _earlier_runs(path: Path) -> dict[str, dict]:
    """From an earlier sweep.json (a file, so nothing in it is trusted): each job that ran, by hash,
    with its start, end and host, so that a resumed sweep still says when its skipped jobs ran."""
    try:
        jobs = json.loads(path.read_text(encoding="utf-8")).get("jobs")
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    kept = {}
    for job in jobs if isinstance(jobs, list) else []:
        if not isinstance(job, dict) or not isinstance(job.get("hash"), str):
            continue
        times = [job.get(key) for key in ("started_unix_s", "ended_unix_s")]
        if all(type(t) in (int, float) for t in times) and isinstance(job.get("host"), (str, type(None))):
            kept[job["hash"]] = {"started_unix_s": times[0], "ended_unix_s": times[1], "host": job.get("host")}
    return kept


def run(sweep: Sweep, engine: Engine, launch: Callable[[Job], Launch],
        on_done: Callable[[Job, dict], None] = lambda job, record: None) -> Sweep:
    """Run the sweep's pending jobs on ``engine`` (``launch`` says how each starts), saving each
    report as OUT/<hash>.json and OUT/sweep.json after each job; then merge every report. Ctrl-C
    (and SIGTERM, SIGHUP) cancels what has not run and keeps what has: the sweep is then incomplete."""
    from flopsbench import signals

    sweep.engine = engine.describe()
    pending = [job for job in sweep.jobs if sweep.records[job.hash]["status"] == "pending"]
    by_hash = {job.hash: job for job in pending}
    sweep.save()

    def done(launched: Launch, result: dict) -> None:
        job = by_hash[launched.job.hash]
        record = sweep.records[job.hash]
        record.update({key: result.get(key) for key in ("status", "returncode", "started_unix_s", "ended_unix_s",
                                                         "host", "stderr_tail")})
        record["file"] = _keep_report(sweep.out / job.file, result.get("report"))
        if record["file"] is None and record["status"] == "ok":
            record["status"] = "failed"
            record["stderr_tail"] = ((record["stderr_tail"] or "") + "\nthe job wrote no report this version "
                                     "reads").lstrip("\n")
        on_done(job, record)
        sweep.save()

    try:
        with signals.ending_as_interrupt():
            engine.run([launch(job) for job in pending], done)
        sweep.complete = True
    except KeyboardInterrupt:
        pass
    for record in sweep.records.values():
        if record["status"] == "pending":
            record["status"] = "cancelled"
    sweep.ended_unix_s = time.time()
    merge_reports(sweep)
    sweep.save()
    return sweep


def _keep_report(path: Path, text: object) -> str | None:
    """Write a job's report into ``path`` if it is one (nothing a job sends is trusted); its name."""
    from flopsbench.output import write_text
    from flopsbench.report import Report

    if not isinstance(text, str):
        return None
    try:
        Report.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    write_text(path, text)
    return path.name


def merge_reports(sweep: Sweep) -> None:
    """Every job's report merged (flopsbench.merge) into OUT/sweep-merged.json and .md: the sweep's
    ``merged`` names them, or says why there are none, and ``merged_report`` holds the merge."""
    from flopsbench.merge import MergeError, merge
    from flopsbench.merged_views import Layout, render
    from flopsbench.output import write_text

    reports = []
    for job in sweep.jobs:
        name = sweep.records[job.hash]["file"]
        report = read_report(sweep.out / name) if name else None
        if report is not None:
            reports.append((name, report))
    if not reports:
        sweep.merged = {"error": "no job wrote a report"}
        return
    try:
        merged = merge(reports)
    except MergeError as exc:
        sweep.merged = {"error": str(exc)}
        return
    sweep.merged, sweep.merged_report = {}, merged
    for fmt, layout in (("json", Layout()), ("md", Layout(paper_names=True))):
        write_text(sweep.out / f"{MERGED_STEM}.{fmt}", render(merged, fmt, layout))
        sweep.merged[fmt] = f"{MERGED_STEM}.{fmt}"


def launcher(plan: Plan, cores: CorePlan | None, env: dict[str, str] | None,
             program: tuple[str, ...] | None = None) -> Callable[[Job], Launch]:
    """How each job of ``plan`` starts: with CorePlan's cores where it runs on this machine
    (``cores``, None where unknown), ``env`` (None: the worker's), this folder, ``program``."""
    cwd = os.getcwd()

    def launch(job: Job) -> Launch:
        return Launch(job, plan.inventory_text, cores.for_job(job.device) if cores else None, env, cwd, program)

    return launch

