"""Cell types and the cell table shared by every detector.

A :class:`CellTable` is a set of equal-length columns sorted by ``cell_id`` so that an id
can be found with :func:`numpy.searchsorted`:

=========== ======= ==============================================
column      dtype   meaning
=========== ======= ==============================================
cell_id     int64   stable detector id (see each detector's encoding)
x, y, z     float32 cell centre [cm]
area        float32 cell area [cm^2] (towers: eta-phi area x r^2)
type        int8    :class:`CellType`
layer       int16   1-based layer (HGCAL) or depth (HCAL)
=========== ======= ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from caloreco.errors import InputFileError, InvalidDataError


class CellType(IntEnum):
    """Sensor type of a cell (codes follow the CMSSW ``si_type`` convention for silicon)."""

    SI_FINE = 0  # 120 um silicon, ~0.52 cm^2 hexagons
    SI_COARSE_THIN = 1  # 200 um silicon, ~1.18 cm^2 hexagons
    SI_COARSE_THICK = 2  # 300 um silicon, ~1.18 cm^2 hexagons
    SCINTILLATOR = 3  # SiPM-on-tile, (r, phi) tiles
    HCAL_TOWER = 4  # eta-phi tower segment of the barrel HCAL


CELL_COLUMNS: dict[str, np.dtype] = {
    "cell_id": np.dtype(np.int64),
    "x": np.dtype(np.float32),
    "y": np.dtype(np.float32),
    "z": np.dtype(np.float32),
    "area": np.dtype(np.float32),
    "type": np.dtype(np.int8),
    "layer": np.dtype(np.int16),
}


@dataclass(frozen=True)
class CellTable:
    """Columns of all cells of a detector, sorted by ``cell_id``."""

    cell_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    area: np.ndarray
    type: np.ndarray
    layer: np.ndarray

    @classmethod
    def from_columns(cls, **cols: np.ndarray) -> "CellTable":
        """Cast to the column dtypes and sort by id; ids must be unique."""
        arrs = {k: np.asarray(cols[k]).astype(d, copy=False) for k, d in CELL_COLUMNS.items()}
        order = np.argsort(arrs["cell_id"], kind="stable")
        arrs = {k: v[order] for k, v in arrs.items()}
        ids = arrs["cell_id"]
        if len(ids) > 1 and (np.diff(ids) == 0).any():
            raise InvalidDataError("cell ids must be unique")
        return cls(**arrs)

    def __len__(self) -> int:
        return len(self.cell_id)

    def index_of(self, cell_id: np.ndarray) -> np.ndarray:
        """Row index of each id, -1 where the id is not a cell of this table."""
        cell_id = np.asarray(cell_id, dtype=np.int64)
        pos = np.searchsorted(self.cell_id, cell_id)
        pos = np.minimum(pos, len(self.cell_id) - 1)
        found = self.cell_id[pos] == cell_id
        return np.where(found, pos, -1)

    def rows(self, cell_id: np.ndarray, *, what: str = "cell ids") -> np.ndarray:
        """Row index of each id; raises :class:`InvalidDataError` naming unknown ids."""
        idx = self.index_of(cell_id)
        if (idx < 0).any():
            bad = np.asarray(cell_id)[idx < 0]
            raise InvalidDataError(
                f"{int((idx < 0).sum())} {what} are not cells of this geometry, e.g. {bad[:5].tolist()}")
        return idx

    def layer_rows(self, layer: int) -> np.ndarray:
        """Row indices of the cells of one layer."""
        return np.flatnonzero(self.layer == layer)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in CELL_COLUMNS}

    # ------------------------------------------------------------------ persistence
    def save_parquet(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Write the table to Parquet atomically (temp file, then rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from caloreco.utils.atomic import atomic_path

        table = pa.table(self.columns())
        if metadata:
            table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
        path = Path(path)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    @classmethod
    def load_parquet(cls, path: str | Path) -> "CellTable":
        """Read a table written by :meth:`save_parquet`."""
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise InputFileError(path, "geometry file does not exist") from None
        except Exception as exc:  # pyarrow raises several types for foreign/truncated files
            raise InputFileError(path, f"not a readable Parquet geometry file ({exc})") from None
        missing = [c for c in CELL_COLUMNS if c not in table.column_names]
        if missing:
            raise InputFileError(path, f"geometry file lacks column(s) {missing}")
        return cls.from_columns(**{c: table.column(c).to_numpy() for c in CELL_COLUMNS})
