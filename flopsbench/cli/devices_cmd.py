"""`flopsbench devices`: the inventory's devices, each checked where it is."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from flopsbench import devices, probe, remote
from flopsbench.cli import app
from flopsbench.cli.options import DevicesFile, bad, check_choice
from flopsbench.cpu import allowed_cores
from flopsbench.escaping import plain_text

FORMATS = ("table", "json")


@app.command("devices")
def devices_command(
    devices_file: DevicesFile = None,
    check: Annotated[bool, typer.Option(help="Reach each device and read it (flopsbench.probe); --no-check "
                                             "lists the inventory only.")] = True,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List the devices of the inventory (--devices) and check each one: reachable, its Python,
    onnxruntime and numpy, its architecture and 64-bit userland, its CPU, and whether its pinned
    cores are idle. Exits 1 if one cannot be reached."""
    check_choice(fmt, FORMATS, "--format")
    try:
        inventory = devices.load_inventory(devices_file)
    except devices.InventoryError as exc:
        raise bad("--devices", str(exc)) from None
    records = [checked(device) if check else {"device": device.record()} for device in inventory.values()]
    if fmt == "json":
        typer.echo(json.dumps({"inventory": str(devices_file or devices.default_path()), "devices": records}, indent=2))
    else:
        show(records)
    if any(record.get("error") for record in records):
        raise typer.Exit(1)


def checked(device: devices.Device) -> dict:
    """``device``'s record, with what its probe read there, or the error that stopped it."""
    record: dict = {"device": device.record()}
    try:
        if device.transport == "ssh":
            workers = remote.SshWorkers(device)
            try:
                record["probe"] = workers.environment()
            finally:
                workers.close()
        else:
            missing = sorted(set(device.cores) - set(allowed_cores()))
            if missing:
                raise remote.RemoteError(f"{device.name}: cores {missing} are not among this process's "
                                         f"{allowed_cores()}")
            record["probe"] = probe.probe(device.cores)
    except remote.RemoteError as exc:
        record["error"] = str(exc)
    return record


def show(records: list[dict]) -> None:
    """One block per device: what the inventory says, then what its probe read (fits any width)."""
    console = Console(soft_wrap=True)
    for record in records:
        device, found = record["device"], record.get("probe") or {}
        environment = found.get("environment") if isinstance(found.get("environment"), dict) else {}
        libraries = environment.get("libraries") if isinstance(environment.get("libraries"), dict) else {}
        where = (f"ssh {device['user'] + '@' if device['user'] else ''}{device['host']}"
                 + (f":{device['port']}" if device["port"] else "") if device["transport"] == "ssh" else "local")
        console.print(Text(plain_text(f"{device['name']}: {where}, {device['kind']}, {device['runtime']}, cores "
                                      f"{','.join(map(str, device['cores']))}, {device['threads']} thread(s)"),
                           style="bold"))
        if record.get("error"):
            console.print(Text("  unreachable: " + plain_text(record["error"]), style="red"))
            continue
        if not found:
            continue
        bits = f", {found['userland_bits']}-bit userland" if found.get("userland_bits") else ""
        machine = f"{environment.get('machine', '?')}{bits}, {environment.get('cpu_model', '?')}"
        for label, value in (("machine", machine),
                             ("python", environment.get("python", "?")),
                             ("onnxruntime", libraries.get("onnxruntime") or "not installed"),
                             ("numpy", found.get("numpy") or "not installed"),
                             ("pinned cores", pinned_state(found.get("pinned_core_load")))):
            console.print(Text(f"  {label:<13}" + plain_text(str(value))))


def pinned_state(record: object) -> str:
    """'idle', or the busy cores and their load, from a probe's pinned_core_load."""
    if not isinstance(record, dict) or not isinstance(record.get("load"), dict):
        return "–"
    listed = record.get("busy") if isinstance(record.get("busy"), list) else []
    busy = [core for core in listed if type(core) is int]
    if not busy:
        return "idle"
    loads = {core: record["load"].get(str(core)) for core in busy}  # a device's answer: numbers or not
    return "busy: " + ", ".join(f"{core} ({load:.0%})" if type(load) in (int, float) else str(core)
                                for core, load in loads.items())

