"""Devices as data: the inventory file that names each device flopsbench can time on.

A TOML file, one table per device under ``[devices.NAME]``::

    [devices.pi4]
    transport = "ssh"            # or "local": this machine
    host = "raspberrypi.local"   # ssh only; user and port optional (else ~/.ssh/config's)
    user = "pi"
    python = "python3"           # the Python on the device (needs onnxruntime and numpy)
    kind = "arm"                 # cpu, cuda or arm
    cores = [0]                  # the cores to pin
    runtime = "onnxruntime"      # torch or onnxruntime (default: onnxruntime over ssh, else the kind's)
    threads = 1                  # default: one per pinned core

Where it is read from: ``--devices FILE``, else ``$FLOPSBENCH_DEVICES``, else ``./devices.toml``,
else ``~/.config/flopsbench/devices.toml``. Nothing in it is trusted: every key and type is checked,
and a bad entry is one error naming the file, the device and the key."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from flopsbench.tomlfile import read_toml

TRANSPORTS = ("local", "ssh")
KINDS = ("cpu", "cuda", "arm")
RUNTIMES = ("torch", "onnxruntime")
DEFAULT_RUNTIME = {"cpu": "torch", "cuda": "torch", "arm": "onnxruntime"}
KEYS = {"transport", "host", "user", "port", "python", "kind", "cores", "runtime", "threads"}
# ssh's own parser would take a host or user starting with '-' as an option (CVE-2017-1000117's kind)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@:%\[\]-]+$")


class InventoryError(ValueError):
    """The inventory cannot be used; the message names the file, the device and the key."""


@dataclass(frozen=True)
class Device:
    name: str
    transport: str = "local"
    host: str | None = None
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    kind: str = "cpu"
    cores: tuple[int, ...] = (0,)
    runtime: str = "torch"
    threads: int = 1

    @property
    def ssh_target(self) -> str:
        """``user@host`` (or the host alone: ~/.ssh/config then picks the user)."""
        return f"{self.user}@{self.host}" if self.user else str(self.host)

    def record(self) -> dict:
        """What a report keeps of the device (no secrets: the inventory holds none)."""
        return asdict(self) | {"cores": list(self.cores)}


def default_path() -> Path:
    """Where the inventory is read from when --devices is not given."""
    if os.environ.get("FLOPSBENCH_DEVICES"):
        return Path(os.environ["FLOPSBENCH_DEVICES"])
    here = Path("devices.toml")
    if here.exists():
        return here
    return Path.home() / ".config" / "flopsbench" / "devices.toml"


def load_inventory(path: str | Path | None = None) -> dict[str, Device]:
    """Every device of the inventory at ``path`` (default_path() if None), by name."""
    path = Path(path) if path is not None else default_path()
    data = read_toml(path, InventoryError, "write one (see docs/devices.md) or give --devices FILE")
    unknown = set(data) - {"devices"}
    if unknown:
        raise InventoryError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}; devices go under [devices.NAME]")
    devices = data.get("devices", {})
    if not isinstance(devices, dict) or not devices:
        raise InventoryError(f"{path}: no devices; add a table [devices.NAME]")
    return {name: parse_device(name, entry, path) for name, entry in devices.items()}


def parse_device(name: str, entry: object, path: Path | str = "inventory") -> Device:
    """One ``[devices.NAME]`` table, checked key by key."""
    where = f"{path}: device {name!r}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise InventoryError(f"{where}: a device name takes letters, digits, '_', '.' and '-' only")
    if not isinstance(entry, dict):
        raise InventoryError(f"{where}: not a table; write [devices.{name}] with its keys")
    unknown = set(entry) - KEYS
    if unknown:
        raise InventoryError(f"{where}: unknown key {sorted(unknown)[0]!r}; the keys are {', '.join(sorted(KEYS))}")

    def text(key: str, default: str | None, choices: tuple[str, ...] | None = None) -> str | None:
        value = entry.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise InventoryError(f"{where}: {key} must be a non-empty string")
        if choices and value not in choices:
            raise InventoryError(f"{where}: {key} {value!r} is not one of {', '.join(choices)}")
        return value

    transport = text("transport", "local", TRANSPORTS)
    kind = text("kind", "cpu", KINDS)
    # over ssh only ONNX files travel: onnxruntime whatever the kind
    runtime = text("runtime", "onnxruntime" if transport == "ssh" else DEFAULT_RUNTIME[kind], RUNTIMES)
    host, user, python = text("host", None), text("user", None), text("python", "python3")
    for key, value in (("host", host), ("user", user)):
        if value is not None and (value.startswith("-") or not _SAFE_NAME.match(value)):
            raise InventoryError(f"{where}: {key} {value!r} is not a host or user name")
    if transport == "ssh" and host is None:
        raise InventoryError(f"{where}: transport 'ssh' needs a host")
    if transport == "local" and (host or user or "port" in entry):
        raise InventoryError(f"{where}: host, user and port are for transport 'ssh'")
    if transport == "local" and "python" in entry:
        raise InventoryError(f"{where}: python is for transport 'ssh' (a local device uses this Python)")
    port = entry.get("port")
    if port is not None and (type(port) is not int or not 0 < port < 65536):
        raise InventoryError(f"{where}: port must be an integer from 1 to 65535")
    cores = entry.get("cores", [0])
    if (not isinstance(cores, list) or not cores or any(type(core) is not int or core < 0 for core in cores)
            or len(set(cores)) != len(cores)):
        raise InventoryError(f"{where}: cores must be a list of distinct core numbers, e.g. [0] or [2, 3]")
    threads = entry.get("threads", len(cores))
    if type(threads) is not int or not 1 <= threads <= len(cores):
        raise InventoryError(f"{where}: threads must be an integer from 1 to the number of cores ({len(cores)})")
    if kind == "cuda" and runtime == "onnxruntime":
        raise InventoryError(f"{where}: onnxruntime runs on the CPU execution provider only; use runtime 'torch'")
    if transport == "ssh" and runtime != "onnxruntime":
        raise InventoryError(f"{where}: a device over ssh runs ONNX files (runtime 'onnxruntime'): torch models are "
                             "not shipped; use transport 'local' on that machine for torch")
    return Device(name=name, transport=transport, host=host, user=user, port=port, python=python, kind=kind,
                  cores=tuple(cores), runtime=runtime, threads=threads)


def find(inventory: dict[str, Device], name: str, path: str | Path | None = None) -> Device:
    """The device ``name``, or an error listing the names there are."""
    if name not in inventory:
        raise InventoryError(f"no device {name!r} in {path or default_path()}; it has {', '.join(sorted(inventory))}")
    return inventory[name]
