"""`flopsbench sweep PLAN.toml`: a plan's workloads × devices, each job an ``ops`` or ``model`` run
``--on`` one device, scheduled on Ray (flopsbench.sweep, flopsbench.sweep_ray), and every report
merged into one; docs/sweep.md."""

from __future__ import annotations

import os
import shlex
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from flopsbench import cpu, plugins, signals, sweep
from flopsbench.cli import ClickException, app
from flopsbench.cli.options import bad, load_plugins, print_line, write_output
from flopsbench.escaping import plain_text
from flopsbench.output import reason


@app.command("sweep")
def sweep_command(
    plan_file: Path = typer.Argument(..., metavar="PLAN.toml", help="The plan: the inventory, and cases of "
                                                                   "operators or models on devices (docs/sweep.md)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Folder for each job's report "
                                       "(<spec hash>.json), sweep.json and the merged report; a job whose "
                                       "finished report is there is skipped (default: PLAN-sweep beside the plan)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", help="Join this Ray cluster, "
                                              "whose nodes hold a resource per device (default: start a local Ray "
                                              "instance on 127.0.0.1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List each job's command and whether it is done; run "
                                                          "nothing."),
) -> None:
    """Run a plan's operators and models on the inventory's devices (jobs on one device one at a
    time, devices in parallel, on Ray) and merge every report into one: Table 1 and Table 3 with a
    column group per device."""
    load_plugins(None)
    try:
        plan = sweep.load_plan(plan_file, check_options)
    except sweep.PlanError as exc:
        raise bad("PLAN.toml", plain_text(exc)) from None
    out = out if out is not None else plan_file.parent / f"{plan_file.stem}-sweep"
    if out.exists() and not out.is_dir():
        raise bad("--out", f"{out} is not a folder; name a folder for the sweep's reports")
    state = sweep.start(plan, out)
    if dry_run:
        for job in state.jobs:
            done = state.records[job.hash]["status"] == "skipped"
            args = job.args(str(plan.inventory_path), str(out / job.file))
            typer.echo(f"{'done' if done else 'todo'} {shlex.join(['flopsbench', *args])}")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise bad("--out", f"cannot make {out} ({reason(exc)})") from None
    stderr = Console(stderr=True)
    cores = None if ray_address else _quiet_cores(plan, stderr)
    env = None if ray_address else dict(os.environ)  # a local job runs as if started here, not as Ray sets it
    total, skipped = len(state.jobs), state.count("skipped")
    print_line(stderr, f"sweep: {total} job{'s' * (total != 1)} on {len(plan.devices)} device"
                       f"{'s' * (len(plan.devices) != 1)}; {skipped} finished already in {out} (skipped), "
                       f"{total - skipped} to run")
    ended = [skipped]

    def on_done(job: sweep.Job, record: dict) -> None:
        ended[0] += 1
        took = (f" in {record['ended_unix_s'] - record['started_unix_s']:.1f} s"
                if record.get("ended_unix_s") and record.get("started_unix_s") else "")
        print_line(stderr, f"[{ended[0]}/{total}] {record['status']} {job.label}{took}",
                   style="" if record["status"] == "ok" else "red")

    try:
        if total > skipped:
            _run_on_ray(state, cores, env, ray_address, on_done, stderr)
        else:  # nothing to run: no Ray either
            state.complete = True
            sweep.merge_reports(state)
            state.save()
    except OSError as exc:  # a report or sweep.json that cannot be written (a full disk)
        raise ClickException(f"cannot write into {plain_text(out)} ({reason(exc)}); the reports written so far are "
                             "there, and a sweep run again resumes") from None
    _summary(state, stderr)
    status = signals.exit_status(state.exit_status)
    if status:
        raise typer.Exit(status)


def _run_on_ray(state: sweep.Sweep, cores: sweep.CorePlan | None, env: dict | None, address: str | None,
                on_done, stderr: Console) -> None:
    """The pending jobs on Ray, the coordinator (so Ray's daemons) kept on ``cores.coordinator``."""
    from flopsbench.sweep_ray import EngineError, RayEngine

    try:
        with cpu.pinned(0, cores.coordinator, torch_threads=False) if cores else nullcontext():
            with RayEngine(state.plan.devices, address) as engine:
                for warning in engine.warnings:
                    print_line(stderr, f"warning: {warning}", style="yellow")
                state.cores = cores.to_dict() if cores else None
                sweep.run(state, engine, sweep.launcher(state.plan, cores, env), on_done)
    except EngineError as exc:
        if address:
            raise bad("--ray-address", plain_text(exc)) from None
        raise ClickException(plain_text(exc)) from None


def check_options(case: sweep.Case, where: str) -> None:
    """A case's options parsed as its command parses them (unknown options, bad values), without
    the options the sweep sets for every job, and with its --plugin files loaded (PlanError)."""
    command = typer.main.get_command(app).commands[case.command]
    if "--help" in case.options:
        raise sweep.PlanError(f"{where}: --help is not a job's option")
    named = [case.names[0]] if case.command == "model" else []
    try:
        ctx = command.make_context(case.command, [*named, *case.options])
    except ClickException as exc:
        raise sweep.PlanError(f"{where}: {exc.format_message()}") from None
    for param in command.params:
        spellings = {*param.opts, *param.secondary_opts}
        source = ctx.get_parameter_source(param.name)
        if spellings & set(sweep.SWEEP_OPTIONS) and source is not None and source.name == "COMMANDLINE":
            raise sweep.PlanError(f"{where}: {'/'.join(param.opts)} is the sweep's: every job gets "
                                  f"{', '.join(sweep.SWEEP_OPTIONS)} from it")
    if case.command == "model" and list(ctx.params.get("names") or []) != named:
        raise sweep.PlanError(f"{where}: {shlex.join(ctx.params['names'][1:])} is not an option; list models "
                              "in models = [...]")
    try:
        plugins.load_all(ctx.params.get("plugin") or [])
    except plugins.PluginError as exc:
        raise sweep.PlanError(f"{where}: --plugin: {exc}") from None


def _quiet_cores(plan: sweep.Plan, stderr: Console) -> sweep.CorePlan:
    """Where the coordinator and Ray's daemons run: off the cores that devices on this machine time
    on; a warning where they cannot be (every core is timed); an error for cores this process
    may not use."""
    allowed = cpu.allowed_cores()
    for device in plan.devices:
        missing = sorted(set(device.cores) - set(allowed)) if sweep.on_this_machine(device) else []
        if missing:
            raise bad("PLAN.toml", f"device {device.name!r} times on core(s) {sweep.core_list(missing)}, which this "
                                   f"process may not use (it may use {sweep.core_list(allowed)}); change its cores "
                                   "in the inventory")
    cores = sweep.plan_cores(plan.devices, allowed)
    if cores.shared:
        print_line(stderr, f"warning: every core this process may use ({sweep.core_list(allowed)}) is a device's "
                           "timed core, so the coordinator and Ray's daemons share them with the timing; leave a "
                           "core free of devices (docs/sweep.md)", style="yellow")
    return cores


def _summary(state: sweep.Sweep, stderr: Console) -> None:
    """The merged report on stdout (as a table); what ran, what failed and the files on stderr."""
    merged = state.merged
    if state.merged_report is not None:
        from flopsbench.merged_views import VIEWS, Layout

        write_output(lambda stream: VIEWS["table"](state.merged_report, stream, Layout()), None, "flopsbench sweep")
    for job in state.jobs:
        record = state.records[job.hash]
        if record["status"] in ("failed", "interrupted"):
            last = (record.get("stderr_tail") or "").strip().splitlines()
            print_line(stderr, f"{record['status']}: {job.label}" + (f": {last[-1]}" if last else ""), style="red")
    counts = ", ".join(f"{state.count(status)} {status}" for status in
                       ("ok", "skipped", "failed", "interrupted", "cancelled") if state.count(status))
    files = [sweep.SWEEP_FILE, *(merged[fmt] for fmt in ("json", "md") if fmt in merged)]
    print_line(stderr, f"sweep {'complete' if state.complete else 'interrupted' + signals.describe()}: {counts}; "
                       f"wrote {', '.join(str(state.out / name) for name in files)}"
                       + (f" (no merged report: {merged['error']})" if "error" in merged else ""))
