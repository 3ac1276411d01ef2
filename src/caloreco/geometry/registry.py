"""Detector registry: name -> (detector class, config dataclass)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from caloreco.errors import ConfigError
from caloreco.geometry.detector import Detector


def _entries() -> dict[str, tuple[type, type]]:
    from caloreco.geometry.hcal import HCalBarrel, HCalBarrelConfig
    from caloreco.geometry.hgcal import HGCalConfig, HGCalEndcap

    return {"hgcal": (HGCalEndcap, HGCalConfig), "hcal-barrel": (HCalBarrel, HCalBarrelConfig)}


DETECTOR_NAMES = ("hgcal", "hcal-barrel")
_CACHE: dict[tuple, Detector] = {}


def make_detector(name: str = "hgcal", **options: Any) -> Detector:
    """Build (or reuse, per process) the detector ``name`` with config overrides ``options``."""
    entries = _entries()
    if name not in entries:
        raise ConfigError(f"unknown detector '{name}'; choose one of {sorted(entries)}")
    cls, cfg_cls = entries[name]
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"detector '{name}' has no option(s) {unknown}; its options are {sorted(known)}")
    key = (name, tuple(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = cls(cfg_cls(**options))
    return _CACHE[key]
