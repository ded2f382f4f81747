"""A stand-in for ``python -m flopsbench`` in the sweep's tests (tests/test_sweep.py): it takes a
job's command line and writes a small valid report to ``-o FILE``, whose environment names the
device (``--on``) and holds ``fake_job``: when the job started and ended (Unix seconds), its pid and
the cores it could use. ``--sleep S`` waits S seconds first; ``--fail`` exits 1 without a report,
saying why on stderr. Ctrl-C (SIGINT) ends the wait: the report is written marked incomplete and
the exit status is 130, as flopsbench's own."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

from flopsbench.report import Report, Row
from flopsbench.spec import Execution, Shape, Workload


def main(argv: list[str]) -> int:
    started = time.time()
    interrupted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))

    def value(flag: str, default: str | None = None) -> str | None:
        return argv[argv.index(flag) + 1] if flag in argv else default

    deadline = started + float(value("--sleep", "0"))
    while time.time() < deadline and not interrupted:
        time.sleep(0.01)
    if "--fail" in argv:
        print("fake job: asked to fail", file=sys.stderr)
        return 1
    command = argv[0]
    workload = (Workload(value("--op"), Shape.parse(value("--shape")), 10, ()) if command == "ops"
                else Workload(argv[1], Shape(3, 224, 224), 1, (), kind="model"))
    environment = {"hostname": socket.gethostname(), "cpu_model": "Fake CPU", "device_name": value("--on"),
                   "fake_job": {"started_unix_s": started, "ended_unix_s": time.time(), "pid": os.getpid(),
                                "affinity": sorted(os.sched_getaffinity(0))}}
    report = Report(command=command, execution=Execution(), environment=environment, argv=argv,
                    rows=[Row(workload=workload, flops=1000, samples_s=[0.001, 0.002, 0.003])],
                    complete=not interrupted)
    with open(value("-o"), "w", encoding="utf-8") as out:
        out.write(report.to_json())
    print("wrote the report", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
