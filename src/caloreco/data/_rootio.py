"""Helpers shared by the ROOT readers (:mod:`~caloreco.data.cmssw_ntuple`,
:mod:`~caloreco.data.edm4hep`)."""

from __future__ import annotations

import difflib
import struct
import zlib
from pathlib import Path
from typing import Any, Iterable

import uproot

from caloreco.errors import InputFileError

#: Exceptions uproot (and the decompressors under it) raise for unreadable bytes.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, IndexError, EOFError, NotImplementedError, struct.error,
    zlib.error, uproot.deserialization.DeserializationError)


def nearest(name: str, candidates: Iterable[str], n: int = 8) -> list[str]:
    """Up to ``n`` candidates, most similar to ``name`` first."""
    ranked = sorted(candidates, key=lambda c: -difflib.SequenceMatcher(None, name, c).ratio())
    return ranked[:n]


def get_tree(path: Path, file: Any, name: str, *, expected: str) -> Any:
    """The TTree ``name`` (highest cycle) of an open file.

    Raises InputFileError when it is missing (listing the file's objects nearest first) or
    not a TTree (e.g. an RNTuple); ``expected`` says what was looked for.
    """
    classes = file.classnames(cycle=False)
    if classes.get(name, "TTree") != "TTree":
        raise InputFileError(path, f"'{name}' is a {classes[name]}, not the TTree of {expected}")
    if name not in classes:
        held = [f"{k} ({classes[k]})" for k in nearest(name, classes)]
        raise InputFileError(path, f"no TTree '{name}' in the file (not {expected}?); it holds, nearest first: {held}")
    return file[name]
