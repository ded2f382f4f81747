"""The ``flopsbench`` command. The CLI's imports (torch, timm, fvcore) take seconds: Ctrl-C or
SIGTERM during them ends the command with one line and exit 130, not an import traceback. It ends
without the interpreter's teardown (flopsbench.process_exit)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from flopsbench.cli import main as cli
    except KeyboardInterrupt:
        print("flopsbench: interrupted while starting; nothing was measured", file=sys.stderr, flush=True)
        # Not sys.exit: an interrupt that landed in code torch's import runs through PyRun_String
        # marks the interpreter to kill itself with SIGINT at exit (status -2), whatever we return.
        os._exit(130)
    from flopsbench.process_exit import exit_now, exit_status

    try:
        cli()
        status = 0
    except SystemExit as exit:
        status = exit_status(exit)
    exit_now(status)  # not the interpreter's teardown: ~0.9 s with torch and timm imported


if __name__ == "__main__":
    main()
