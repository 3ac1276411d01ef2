"""Argument types shared by the command-line modules (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
from typing import Callable


def bounded_int(low: int, high: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type accepting integers in ``[low, high]`` (``high`` None: no bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if v < low or (high is not None and v > high):
            rule = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected {what} {rule}, got {v}")
        return v

    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
port = bounded_int(0, 65535, "a port number (0 = a free port)")


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 1, e.g. ``1,4,16``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got '{text}'")
    return values
