"""Helpers shared by the ROOT readers (:mod:`~caloreco.data.cmssw_ntuple`,
:mod:`~caloreco.data.edm4hep`)."""

from __future__ import annotations

import difflib
import struct
import zlib
from typing import Iterable

import uproot

#: Exceptions uproot (and the decompressors under it) raise for unreadable bytes.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, IndexError, EOFError, NotImplementedError, struct.error,
    zlib.error, uproot.deserialization.DeserializationError)


def nearest(name: str, candidates: Iterable[str], n: int = 8) -> list[str]:
    """Up to ``n`` candidates, most similar to ``name`` first."""
    ranked = sorted(candidates, key=lambda c: -difflib.SequenceMatcher(None, name, c).ratio())
    return ranked[:n]
