"""Reader for calorimeter hits in EDM4hep files (podio ROOT layout, TTree ``events``).

:func:`read_edm4hep` maps each entry of the ``events`` tree onto an
:class:`~caloreco.data.event.Event`:

hits (the chosen ``edm4hep::CalorimeterHit`` collections, concatenated in that order)
    ``x, y, z`` [cm] from ``position.x/y/z`` [mm] / 10, ``energy`` [GeV], ``time`` [ns],
    ``cell_id`` the 64-bit DD4hep ``cellID`` reinterpreted bit for bit as int64 (the
    schema dtype; ``cell_id.view(np.uint64)`` gives it back), ``layer`` the ``layer``
    field of the collection's cellID encoding (DD4hep ``BitFieldCoder`` string such as
    ``system:0:5,...,layer:19:9,...`` found in the file's collection metadata), 0 where
    the file stores no encoding or the encoding has no ``layer`` field.
truth
    ``truth_cluster`` is -1 for every hit and the cluster table is empty. EDM4hep links
    hits to particles only through association collections (CalorimeterHit ->
    SimCalorimeterHit -> contributions -> MCParticle, or CalorimeterHit -> MCParticle)
    whose names and layout vary between EDM4hep versions and which are often stored
    incompletely: in the CLIC reference file the direct ``CalohitMCTruthLink`` points at a
    collection ``MCParticle`` that is not stored, and the barrel contributions are missing,
    so neither chain can be resolved within the file.
particles (``MCParticles`` with ``generatorStatus == 1``; empty if there is no such collection)
    ``pdg`` ``PDG``, ``px, py, pz`` [GeV] ``momentum``, ``energy`` [GeV]
    sqrt(p^2 + ``mass``^2), ``vx, vy, vz`` [cm] ``vertex`` [mm] / 10, ``cluster`` -1.

Collections are found by their branch type (``vector<edm4hep::CalorimeterHitData>`` in the
podio TTree layout), not by name. ``event_id`` is the entry number. Events whose chosen
collections are all empty are returned with zero hits.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any, Sequence

import awkward as ak
import numpy as np
import uproot

from caloreco.data._rootio import READ_ERRORS, get_tree, nearest
from caloreco.data.event import Event
from caloreco.errors import ConfigError, InputFileError

#: ``Event.detector`` of events from this reader (the file does not name the detector).
DETECTOR = "edm4hep"

_TREE = "events"
_HIT_TYPE = "edm4hep::CalorimeterHitData"
_HIT_MEMBERS = ("cellID", "energy", "time", "position.x", "position.y", "position.z")
_PARTICLES = "MCParticles"
_PARTICLE_MEMBERS = ("PDG", "generatorStatus", "mass", "momentum.x", "momentum.y",
                     "momentum.z", "vertex.x", "vertex.y", "vertex.z")
_MM_TO_CM = 0.1


def read_edm4hep(path: str | Path, *, collections: Sequence[str] | None = None,
                 entry_start: int | None = None,
                 entry_stop: int | None = None) -> list[Event]:
    """Read the calorimeter hits and generator particles of EDM4hep events.

    Args:
        path: the podio ROOT file.
        collections: names of ``edm4hep::CalorimeterHit`` collections to read (default:
            every collection of that type in the file, e.g. ``ECALBarrel``, ``ECALEndcap``,
            ``HCAL*``, ``MUON``).
        entry_start, entry_stop: entry range, Python slice semantics (default: all).

    Returns:
        One :class:`Event` per entry (mapping in the module docstring).

    Raises:
        ConfigError: ``collections`` is a string, empty, or repeats a name.
        InputFileError: the file is missing, not ROOT, truncated, has no ``events`` TTree,
            or lacks a requested (or any) CalorimeterHit collection or one of its members.
        InvalidDataError: a non-finite hit position, energy or time.
    """
    path = Path(path)
    if collections is not None:
        if isinstance(collections, str):
            raise ConfigError(f"collections must be a list of collection names, got the "
                              f"string '{collections}' (use ['{collections}'])")
        if len(collections) == 0:
            raise ConfigError("collections must name at least one CalorimeterHit "
                              "collection (or be None for all of them)")
        repeated = sorted({c for c in collections if list(collections).count(c) > 1})
        if repeated:
            raise ConfigError(f"collections lists {repeated} more than once; each "
                              f"collection's hits would be read twice")
    hit_arrays, particles, layer_fields, entries = _read_arrays(path, collections,
                                                                entry_start, entry_stop)
    columns = [_hit_columns(arr, layer_fields.get(name)) for name, arr in hit_arrays.items()]
    events = []
    for i, entry in enumerate(entries):
        hits = {key: np.concatenate([cols[key][i] for cols in columns])
                for key in ("x", "y", "z", "energy", "time", "layer", "cell_id")}
        hits["truth_cluster"] = np.full(len(hits["energy"]), -1, dtype=np.int32)
        events.append(Event.from_columns(
            hits, None, _particles({m: v[i] for m, v in particles.items()}) if particles
            else None,
            event_id=entry, detector=DETECTOR, source=str(path)))
    return events


def _read_arrays(path: Path, collections: Sequence[str] | None, entry_start: int | None,
                 entry_stop: int | None
                 ) -> tuple[dict[str, dict[str, ak.Array]], dict[str, ak.Array],
                            dict[str, tuple[int, int, bool]], range]:
    """Member arrays of each hit collection and of MCParticles (empty if not stored), the
    layer bit field of each collection and the entries read."""
    if not path.is_file():
        raise InputFileError(path, "file not found" if not path.exists() else "not a file")
    try:
        with uproot.open(path) as file:
            tree = _events_tree(path, file)
            names = _hit_collections(path, tree, collections)
            entries = range(tree.num_entries)[slice(entry_start, entry_stop)]
            hit_arrays = {}
            for name in names:
                missing = [m for m in _HIT_MEMBERS if f"{name}.{m}" not in tree[name]]
                if missing:
                    raise InputFileError(path, f"collection '{name}' lacks member branch(es) "
                                               f"{missing}")
                hit_arrays[name] = _members(tree[name], _HIT_MEMBERS, entries)
            particles = {}
            if _PARTICLES in tree and all(f"{_PARTICLES}.{m}" in tree[_PARTICLES]
                                          for m in _PARTICLE_MEMBERS):
                particles = _members(tree[_PARTICLES], _PARTICLE_MEMBERS, entries)
            return hit_arrays, particles, _layer_fields(path, file, names), entries
    except InputFileError:
        raise
    except READ_ERRORS as exc:
        raise InputFileError(path, f"cannot read the file as EDM4hep ROOT (truncated or not "
                                   f"ROOT?): {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0]}") from exc


def _members(branch: Any, members: Sequence[str], entries: range) -> dict[str, ak.Array]:
    """Jagged arrays of the member sub-branches of a collection branch."""
    return {m: branch[f"{branch.name}.{m}"].array(entry_start=entries.start,
                                                  entry_stop=entries.stop, library="ak")
            for m in members}


def _events_tree(path: Path, file: Any) -> Any:
    """The ``events`` TTree (highest cycle), or InputFileError listing the file's trees."""
    return get_tree(path, file, _TREE, expected="a podio/EDM4hep file")


def _hit_collections(path: Path, tree: Any, requested: Sequence[str] | None) -> list[str]:
    """Names of the CalorimeterHit collections to read, checked against the tree."""
    # the type name is slow to build, so only branches with a cellID member are asked
    candidates = [b for b in tree.branches if f"{b.name}.cellID" in b]
    hit_colls = [b.name for b in candidates
                 if b.typename.replace("std::", "") == f"vector<{_HIT_TYPE}>"]
    if requested is None:
        if not hit_colls:
            raise InputFileError(path, f"tree '{_TREE}' has no edm4hep::CalorimeterHit "
                                       f"collection; its branches: "
                                       f"{sorted(b.name for b in tree.branches)[:20]}")
        return hit_colls
    for name in requested:
        if name in hit_colls:
            continue
        if name not in tree.keys(recursive=False):
            raise InputFileError(path, f"no collection '{name}' in tree '{_TREE}'; "
                                       f"CalorimeterHit collections, nearest first: "
                                       f"{nearest(name, hit_colls)}")
        raise InputFileError(path, f"collection '{name}' holds {tree[name].typename}, not "
                                   f"edm4hep::CalorimeterHit; those are "
                                   f"{nearest(name, hit_colls)}")
    return list(requested)


def _hit_columns(arr: dict[str, ak.Array], layer_field: tuple[int, int, bool] | None
                 ) -> dict[str, list[np.ndarray]]:
    """Per-event numpy columns of one collection (schema names and units)."""
    counts = np.asarray(ak.num(arr["energy"]))
    bounds = np.concatenate([[0], np.cumsum(counts)])

    def flat(member: str) -> np.ndarray:
        return ak.to_numpy(ak.flatten(arr[member]))

    cell = flat("cellID").astype(np.uint64)
    if layer_field is None:
        layer = np.zeros(len(cell), dtype=np.int64)
    else:
        layer = _decode(cell, *layer_field)
    cols = {"x": flat("position.x") * _MM_TO_CM, "y": flat("position.y") * _MM_TO_CM,
            "z": flat("position.z") * _MM_TO_CM, "energy": flat("energy"),
            "time": flat("time"), "layer": layer, "cell_id": cell.view(np.int64)}
    return {key: np.split(col, bounds[1:-1]) for key, col in cols.items()}


def _particles(members: dict[str, ak.Array]) -> dict[str, np.ndarray]:
    """Particle table of the stable generator particles of one event."""
    col = {m: np.asarray(v, dtype=np.float64) for m, v in members.items()}
    stable = col["generatorStatus"] == 1
    col = {m: v[stable] for m, v in col.items()}
    p2 = col["momentum.x"] ** 2 + col["momentum.y"] ** 2 + col["momentum.z"] ** 2
    n = int(stable.sum())
    return {"pdg": col["PDG"], "energy": np.sqrt(p2 + col["mass"] ** 2),
            "px": col["momentum.x"], "py": col["momentum.y"], "pz": col["momentum.z"],
            "vx": col["vertex.x"] * _MM_TO_CM, "vy": col["vertex.y"] * _MM_TO_CM,
            "vz": col["vertex.z"] * _MM_TO_CM, "cluster": np.full(n, -1),
            "is_pileup": np.zeros(n, dtype=bool)}


# --- cellID encodings -------------------------------------------------------------------

def _layer_field(encoding: str) -> tuple[int, int, bool] | None:
    """(offset, width, signed) of the ``layer`` field of a DD4hep BitFieldCoder string.

    Fields are ``name:offset:width`` or ``name:width`` (offset = end of the previous
    field); a negative width marks a signed field.
    """
    offset = 0
    for field in encoding.replace(" ", "").split(","):
        parts = field.split(":")
        if len(parts) == 3:
            offset, width = int(parts[1]), int(parts[2])
        elif len(parts) == 2:
            width = int(parts[1])
        else:
            raise ValueError(f"bad field '{field}' in cellID encoding '{encoding}'")
        if parts[0] == "layer":
            return offset, abs(width), width < 0
        offset += abs(width)
    return None


def _decode(cell: np.ndarray, offset: int, width: int, signed: bool) -> np.ndarray:
    """One bit field of uint64 cell ids as int64."""
    value = ((cell >> np.uint64(offset)) & np.uint64((1 << width) - 1)).astype(np.int64)
    if signed:
        value = np.where(value >= 1 << (width - 1), value - (1 << width), value)
    return value


def _layer_fields(path: Path, file: Any, names: Sequence[str]
                  ) -> dict[str, tuple[int, int, bool]]:
    """Layer bit field of each collection in ``names`` whose cellID encoding has one.

    Two podio layouts are understood: podio >= 1.0 keeps the metadata frame's string
    parameters in branches ``GPStringKeys`` / ``GPStringValues`` of the ``metadata`` tree
    (key ``<collection>__CellIDEncoding``); older podio keeps per-collection parameters in
    ``col_metadata`` (key ``CellIDEncodingString``) indexed by the collection ids of
    ``metadata/CollectionIDs``. Metadata that cannot be decoded gives a warning and no
    encodings (layers 0), since the hits themselves are still readable.
    """
    try:
        encodings = _cellid_encodings(file, names)
        fields = {n: _layer_field(enc) for n, enc in encodings.items()}
        return {n: f for n, f in fields.items() if f is not None}
    except (*READ_ERRORS, TypeError, UnicodeDecodeError) as exc:
        warnings.warn(f"cannot decode the cellID encodings in the podio metadata "
                      f"({type(exc).__name__}: {exc}); layer set to 0 for all hits\n"
                      f"  in file: {path}", stacklevel=4)
    return {}


def _cellid_encodings(file: Any, names: Sequence[str]) -> dict[str, str]:
    """CellID encoding string of each collection in ``names`` that has one."""
    classes = file.classnames(cycle=False)
    if classes.get("metadata") != "TTree":
        return {}
    meta = file["metadata"]
    if "GPStringKeys" in meta and "GPStringValues" in meta:  # podio >= 1.0
        keys = meta["GPStringKeys"].array(library="np", entry_stop=1)[0]
        values = meta["GPStringValues"].array(library="np", entry_stop=1)[0]
        params = {str(k): list(v) for k, v in zip(keys, values)}
        return {n: str(params[f"{n}__CellIDEncoding"][0]) for n in names
                if params.get(f"{n}__CellIDEncoding")}
    if classes.get("col_metadata") != "TTree" or "CollectionIDs" not in meta:
        return {}
    ids = meta["CollectionIDs"].arrays(library="np", entry_stop=1)
    id_of = {str(n): int(i) for n, i in zip(ids["m_names"][0], ids["m_collectionIDs"][0])}
    col_md = file["col_metadata"]
    col_ids = col_md["colMD/colMD.first"].array(library="np", entry_stop=1)[0]
    basket = col_md["colMD/colMD.second._stringMap"].basket(0)
    raw = basket.data[basket.byte_offsets[0]:basket.byte_offsets[1]].tobytes()
    maps = dict(zip((int(i) for i in col_ids), _memberwise_string_maps(raw, len(col_ids))))
    out = {}
    for n in names:
        enc = maps.get(id_of.get(n, -1), {}).get("CellIDEncodingString")
        if enc:
            out[n] = enc[0]
    return out


def _memberwise_string_maps(raw: bytes, n_maps: int) -> list[dict[str, list[str]]]:
    """Decode ``n_maps`` ``std::map<std::string, std::vector<std::string>>`` objects.

    ROOT streams the array of maps member-wise, which uproot cannot read: a 4-byte byte
    count and a 2-byte version, the 2-byte version of the pair class (0: a 4-byte
    checksum follows), then per map its size and, if not empty, the block of keys and the
    block of values, each after its own byte count and version. Strings have a 1-byte
    length (255: a 4-byte length follows). The block must be consumed exactly.
    """
    pos = 6
    (pair_version,) = struct.unpack_from(">H", raw, pos)
    pos += 2 if pair_version else 6

    def u32() -> int:
        nonlocal pos
        (value,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        return int(value)

    def string() -> str:
        nonlocal pos
        size = raw[pos]
        pos += 1
        if size == 255:
            size = u32()
        text = raw[pos:pos + size].decode()
        pos += size
        return text

    maps = []
    for _ in range(n_maps):
        size = u32()
        if size == 0:
            maps.append({})
            continue
        pos += 6  # byte count and version of the keys block
        keys = [string() for _ in range(size)]
        pos += 6  # byte count and version of the values block
        values = [[string() for _ in range(u32())] for _ in range(size)]
        maps.append(dict(zip(keys, values)))
    if pos != len(raw):
        raise ValueError(f"member-wise map block has {len(raw) - pos} unread bytes")
    return maps

