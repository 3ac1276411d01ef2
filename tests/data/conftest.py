"""Fixtures for the reader tests: the shared reference files and broken files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import uproot

#: ``../shared/data`` next to the repository (see its README for provenance).
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_file() -> Callable[[str], Path]:
    """Factory: a file under ``../shared/data``; skips the test if it is absent."""
    def find(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.is_file():
            pytest.skip(f"reference file {path} not present (the tests read "
                        f"../shared/data next to the repository)")
        return path
    return find


@pytest.fixture
def truncated_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """Factory: a copy of a file holding only the first half of its bytes."""
    def make(source: Path) -> Path:
        data = source.read_bytes()
        out = tmp_path / f"truncated_{source.name}"
        out.write_bytes(data[: len(data) // 2])
        return out
    return make


@pytest.fixture
def text_as_root(tmp_path: Path) -> Path:
    """A text file with a .root name."""
    out = tmp_path / "notes.root"
    out.write_text("this is not a ROOT file\n" * 20)
    return out


@pytest.fixture
def root_without_tree(tmp_path: Path) -> Path:
    """A valid ROOT file (written by uproot) holding only a TTree named ``other``."""
    out = tmp_path / "other.root"
    with uproot.recreate(out) as file:
        tree = file.mktree("other", {"a": np.float32})
        tree.extend({"a": np.arange(3, dtype=np.float32)})
    return out
