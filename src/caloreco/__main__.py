"""Entry point of the ``caloreco`` console script and ``python -m caloreco``."""

from __future__ import annotations

import sys
from typing import Sequence

from caloreco.errors import CalorecoError


def entry(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a user error becomes one ``ERROR`` line on stderr and exit code 2."""
    from caloreco.cli import main

    try:
        code = main(argv)
    except CalorecoError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        print(f"ERROR: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"       {line.strip()}", file=sys.stderr)
        code = 2
    except OSError as exc:  # unwritable output directory, full disk, ...
        print(f"ERROR: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    entry()
