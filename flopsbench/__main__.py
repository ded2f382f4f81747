"""The ``flopsbench`` command. The CLI's imports (torch, timm, fvcore) take seconds: Ctrl-C or
SIGTERM during them ends the command with one line and exit 130, not an import traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from flopsbench.cli import main as cli
    except KeyboardInterrupt:
        print("flopsbench: interrupted while starting; nothing was measured", file=sys.stderr)
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
