"""The ``flopsbench`` command. The CLI's imports (torch, timm, fvcore) take seconds: Ctrl-C or
SIGTERM during them ends the command with one line and exit 130, not an import traceback."""

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
    cli()


if __name__ == "__main__":
    main()
