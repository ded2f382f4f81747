"""The sweep's engine on Ray (the ``ray`` extra; flopsbench.sweep runs each job): every device is a
custom resource of capacity 1 and every job a Ray task that holds its device's resource (and no
CPU), so jobs on one device never overlap while different devices run in parallel.

Without an address, a local Ray instance is started with one resource per device, bound to the
loopback address, without its dashboard and quiet. With one, the sweep joins that cluster, whose
nodes must hold the devices' resources (``ray start --address ADDR --resources '{"pi4": 1}'``)."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable

from flopsbench.devices import Device
from flopsbench.sweep import Launch, run_job

# Ray's own resources: a device of one of these names would be scheduled as Ray's, not as a device.
RESERVED = ("CPU", "GPU", "memory", "object_store_memory")
OBJECT_STORE_BYTES = 100 << 20  # job reports pass through it, a few MB each; Ray's least is 75 MiB
WAIT_S = 0.5  # ray.wait's slice: signals are handled between slices
CONNECT_S = 5.0  # an address that does not answer in this long is not a Ray head (Ray itself waits minutes)
ENVIRONMENT = {
    # Ray binds its servers to this machine's network address unless it is told it is no cluster; then
    # to 127.0.0.1 (the variable's name says Windows and macOS; Ray reads it on Linux too).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report sent anywhere
    # Ray before 2.5x emptied CUDA_VISIBLE_DEVICES for tasks that take no GPU: a cuda device's job needs it.
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}


class EngineError(RuntimeError):
    """Ray cannot run the sweep (not installed, a cluster without the devices); one line says why."""


def check_reachable(address: str) -> None:
    """EngineError unless something answers at ``address`` ('HOST:PORT' or 'ray://HOST:PORT'; others,
    'auto' say, are left to Ray): Ray retries an address that does not answer for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
    except OSError as exc:
        raise EngineError(f"nothing answers at {address} ({exc.strerror or exc}); start the cluster's head there "
                          "(ray start --head) or give its address") from None


class RayEngine:
    """Ray started (``address`` None: a local instance) or joined for ``devices``; a context manager."""

    def __init__(self, devices: list[Device], address: str | None = None):
        self.devices, self.address = devices, address
        self.warnings: list[str] = []
        self._saved_environment: dict[str, str | None] = {}
        self.ray = None

    def __enter__(self) -> "RayEngine":
        reserved = [d.name for d in self.devices if d.name in RESERVED]
        if reserved:
            raise EngineError(f"device {reserved[0]!r} has the name of one of Ray's own resources "
                              f"({', '.join(RESERVED)}); rename it in the inventory")
        changes = ENVIRONMENT if self.address is None else {k: v for k, v in ENVIRONMENT.items()
                                                             if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        self._saved_environment = {key: os.environ.get(key) for key in changes}
        os.environ.update(changes)  # before Ray is imported: it reads them then, and its daemons inherit them
        try:
            import ray
        except ImportError:
            self._restore_environment()
            raise EngineError("a sweep runs on Ray, which is not installed; install the extra: "
                              "pip install 'flopsbench[ray]'") from None
        self.ray = ray
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        ray, names = self.ray, [d.name for d in self.devices]
        quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        if self.address is None:
            ray.init(address="local", num_cpus=1, num_gpus=0, resources={name: 1 for name in names},
                     object_store_memory=OBJECT_STORE_BYTES, **quiet)
            return
        check_reachable(self.address)
        try:
            ray.init(address=self.address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError: whatever Ray says, in one line
            raise EngineError(f"cannot join the Ray cluster at {self.address} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        held = ray.cluster_resources()
        missing = [name for name in names if held.get(name, 0) < 1]
        if missing:
            example = json.dumps({name: 1 for name in missing[:1]})
            raise EngineError(f"the Ray cluster at {self.address} has no resource for device(s) {', '.join(missing)}; "
                              f"start a node that holds each, e.g. ray start --address {self.address} "
                              f"--resources '{example}'")
        self.warnings = [f"the Ray cluster holds {held[name]:g} of device {name!r}'s resource, so {held[name]:g} "
                         "jobs may time on it at once; give each device's resource capacity 1"
                         for name in names if held.get(name, 0) > 1]

    def __exit__(self, *exc) -> None:
        if self.ray is not None and self.ray.is_initialized():
            self.ray.shutdown()
        self._restore_environment()

    def _restore_environment(self) -> None:
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def describe(self) -> dict:
        ray = self.ray
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        return {"name": "ray", "ray_version": ray.__version__, "address": self.address or "local instance",
                "nodes": sorted(str(node.get("NodeManagerAddress")) for node in nodes)}

    def run(self, launches: list[Launch], done: Callable[[Launch, dict], None]) -> None:
        """Each launch a task holding its device's resource; ``done`` as each ends. On
        KeyboardInterrupt: the tasks not yet started are cancelled, the running ones interrupted
        (run_job passes it on to the job, which writes what it has), and those are still collected
        unless a second interrupt comes."""
        ray = self.ray
        task = ray.remote(run_job)
        refs = {task.options(resources={launch.job.device.name: 1}, num_cpus=0, max_retries=0,
                             name=f"flopsbench {launch.job.label}").remote(launch): launch for launch in launches}
        pending = list(refs)
        try:
            self._collect(pending, refs, done)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            try:
                self._collect(pending, refs, done)
            except KeyboardInterrupt:
                pass
            raise

    def _collect(self, pending: list, refs: dict, done: Callable[[Launch, dict], None]) -> None:
        """Wait for ``pending`` (emptied in place as tasks end) in slices, so that signals get in."""
        ray = self.ray
        while pending:
            ready, rest = ray.wait(pending, num_returns=len(pending), timeout=WAIT_S)
            pending[:] = rest
            for ref in ready:
                result = self._result(ref)
                if result is not None:
                    done(refs[ref], result)

    def _result(self, ref) -> dict | None:
        """A finished task's record; a failed task's as a failed job's; None if cancelled before it ran."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return None
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()
            return {"status": "failed", "stderr_tail": f"Ray: {type(exc).__name__}: {first[0] if first else ''}"}
