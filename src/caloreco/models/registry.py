"""Model registry: name -> (network class, config class).

Every clustering network here maps ``(features [N, F], points [N, 3], batch [N])`` to
``(coords [N, D], beta [N])`` and is trained by the same object-condensation loss, so the
training, clustering and serving code is shared and only the network differs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from caloreco.errors import ConfigError


def _spvcnn() -> tuple[type, type]:
    from caloreco.models.spvcnn import SPVCNN, SPVCNNConfig

    return SPVCNN, SPVCNNConfig


def _gravnet() -> tuple[type, type]:
    from caloreco.models.gravnet import GravNetConfig, GravNetModel

    return GravNetModel, GravNetConfig


_MODELS = {"spvcnn": _spvcnn, "gravnet": _gravnet}


def model_names() -> list[str]:
    return list(_MODELS)


def model_classes(name: str) -> tuple[type, type]:
    """``(network class, config class)`` of a registered model."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model '{name}'; choose from {model_names()}")
    return _MODELS[name]()


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate model ``name`` from a config dictionary (as stored in checkpoints)."""
    cls, cfg_cls = model_classes(name)
    cfg = dict(config)
    if "widths" in cfg and cfg["widths"] is not None:
        cfg["widths"] = tuple(cfg["widths"])
    try:
        return cls(cfg_cls(**cfg))
    except TypeError as exc:
        raise ConfigError(f"bad configuration for model '{name}': {exc}") from None


def has_energy_head(model: nn.Module) -> bool:
    """Whether ``model`` also predicts a per-hit energy-correction factor."""
    return bool(getattr(getattr(model, "config", None), "energy_head", False))


def has_signal_head(model: nn.Module) -> bool:
    """Whether ``model`` also predicts a per-hit signal probability (shower, not noise)."""
    return bool(getattr(getattr(model, "config", None), "signal_head", False))


def output_names(model: nn.Module) -> tuple[str, ...]:
    """Names of the network's outputs, in order: ``coords``, ``beta``, then
    ``energy_factor`` with an energy head and ``signal`` with a signal head."""
    return (("coords", "beta") + (("energy_factor",) if has_energy_head(model) else ())
            + (("signal",) if has_signal_head(model) else ()))


def named_outputs(model: nn.Module, outputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """The network's output tuple as ``{name: tensor}`` (names: :func:`output_names`)."""
    names = output_names(model)
    if len(outputs) != len(names):
        raise ConfigError(f"the network returned {len(outputs)} outputs, its configuration "
                          f"names {len(names)}: {names}")
    return dict(zip(names, outputs))
