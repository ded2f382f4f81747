"""Ending a process without the interpreter's teardown still runs the exit handlers, flushes what was
printed and exits with the status asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flopsbench.process_exit import exit_status

PROGRAM = """
import atexit, pathlib, sys
from flopsbench.process_exit import exit_now
atexit.register(lambda: pathlib.Path(sys.argv[1]).write_text("ran"))
print("buffered, not yet flushed", end="")
sys.stderr.write("and on stderr")
exit_now(3)
print("never")
"""


def test_exit_now_runs_the_handlers_flushes_and_exits_with_the_status(tmp_path):
    marker = tmp_path / "handler"
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(marker)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 3
    assert done.stdout == "buffered, not yet flushed" and done.stderr == "and on stderr"
    assert marker.read_text() == "ran"


def test_exit_now_into_a_closed_pipe_is_silent():
    program = ("import sys\nfrom flopsbench.process_exit import exit_now\nsys.stdin.readline()\n"
               "print('still buffered', end='')\nexit_now(0)")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    process = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader leaves before the flush
    process.stdin.write(b"go\n")
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    stderr = process.stderr.read()
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr


@pytest.mark.parametrize("code, status, printed", [(None, 0, ""), (0, 0, ""), (2, 2, ""), (130, 130, ""),
                                                   ("a message", 1, "a message\n")])
def test_exit_status_is_what_sys_exit_would_give(code, status, printed, capsys):
    assert exit_status(SystemExit(code)) == status
    assert capsys.readouterr().err == printed
