"""Checkpoints: model name and configuration, hit encoding, weights, training state.

Files are written atomically and read with ``torch.load(weights_only=True)``: only tensors
and plain Python containers are accepted, never pickled code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caloreco.errors import ConfigError, InputFileError
from caloreco.models.encoding import Encoding, encoding_from_dict
from caloreco.models.registry import build_model
from caloreco.utils.atomic import atomic_path

#: Format marker stored in every checkpoint.
FORMAT = "caloreco-checkpoint-1"


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model (and, optionally, resume training)."""

    model_name: str
    model_config: dict[str, Any]
    encoding: dict[str, Any]  # to_dict() of the hit encoding; no "kind" = hgcal (old files)
    state_dict: dict[str, torch.Tensor]
    clustering: dict[str, float] = field(default_factory=lambda: {"t_beta": 0.1, "t_d": 0.7})
    training: dict[str, Any] = field(default_factory=dict)  # epoch, step, optimizer, ...
    metrics: dict[str, Any] = field(default_factory=dict)

    def build(self, device: str | torch.device = "cpu") -> tuple[nn.Module, Encoding]:
        """The model (eval mode, weights loaded) and its hit encoding (of the stored kind,
        :func:`caloreco.models.encoding.encoding_from_dict`)."""
        model = build_model(self.model_name, self.model_config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise ConfigError(f"checkpoint weights do not fit model '{self.model_name}' with "
                              f"config {self.model_config}: {str(exc).splitlines()[0]}") from None
        model.to(device).eval()
        return model, encoding_from_dict(self.encoding)


#: Values per scale of the int8 storage (:func:`quantize_int8`).
INT8_GROUP = 32


def quantize_int8(t: torch.Tensor) -> dict[str, Any]:
    """Symmetric int8 storage of a float tensor, one scale per group of
    :data:`INT8_GROUP` consecutive values (flattened, zero-padded):
    ``q = round(v / s)``, ``s = max|v| / 127`` over the group, so every value is kept to
    within ``s / 2`` (half a step of its own group's range)."""
    flat = t.detach().cpu().float().reshape(-1)
    pad = (-flat.numel()) % INT8_GROUP
    groups = torch.cat([flat, flat.new_zeros(pad)]).view(-1, INT8_GROUP)
    scale = groups.abs().amax(1) / 127.0
    q = torch.round(groups / scale.clamp(min=torch.finfo(torch.float32).tiny)[:, None])
    return {"q": q.to(torch.int8), "scale": scale, "shape": list(t.shape)}


def dequantize_int8(entry: dict[str, Any]) -> torch.Tensor:
    """Float32 tensor of a :func:`quantize_int8` entry."""
    shape = [int(d) for d in entry["shape"]]
    n = 1
    for d in shape:
        n *= d
    values = entry["q"].float() * entry["scale"].float()[:, None]
    return values.reshape(-1)[:n].reshape(shape)


def save_checkpoint(ckpt: Checkpoint, path: str | Path, *, half: bool = False,
                    int8: bool = False) -> Path:
    """Write ``ckpt`` atomically.

    ``half`` stores float weights as float16 (shipping); ``int8`` also stores every float
    matrix of at least :data:`INT8_GROUP` values as int8 with a float32 scale per group
    (:func:`quantize_int8`; half the size of float16, for the shipped models). Loading
    restores float32 either way.
    """
    state, quantized = {}, {}
    for k, v in ckpt.state_dict.items():
        if int8 and v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_GROUP:
            quantized[k] = quantize_int8(v)
        elif (half or int8) and v.is_floating_point():
            state[k] = v.detach().cpu().half()
        else:
            state[k] = v.detach().cpu()
    payload = {"format": FORMAT, "model_name": ckpt.model_name, "model_config": ckpt.model_config,
               "encoding": ckpt.encoding, "state_dict": state, "clustering": ckpt.clustering,
               "training": ckpt.training, "metrics": ckpt.metrics}
    if quantized:
        payload["quantized"] = quantized
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, *, expect_model: str | None = None,
                    expect_config: dict[str, Any] | None = None) -> Checkpoint:
    """Read a checkpoint file, or the ``last.pt``/``best.pt`` of a run directory.

    Raises:
        InputFileError: missing, unreadable or foreign file.
        ConfigError: the checkpoint's model or configuration differs from what the caller
            expects (e.g. resuming a run with other hyper-parameters).
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "model.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise InputFileError(path, "run directory holds no best.pt, last.pt or model.pt")
    if not path.exists():
        raise InputFileError(path, "checkpoint does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise InputFileError(path, f"not a readable checkpoint ({type(exc).__name__}: a "
                                   f"truncated file, or not written by torch.save of tensors "
                                   f"and plain containers)") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputFileError(path, f"not a caloreco checkpoint (format marker {FORMAT!r} missing)")
    state = {k: (v.float() if v.dtype == torch.float16 else v) for k, v in raw["state_dict"].items()}
    for k, entry in raw.get("quantized", {}).items():
        try:
            state[k] = dequantize_int8(entry)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise InputFileError(path, f"int8 weights of '{k}' are malformed ({exc})") from None
    ckpt = Checkpoint(raw["model_name"], dict(raw["model_config"]), dict(raw["encoding"]), state,
                      dict(raw.get("clustering", {})), dict(raw.get("training", {})),
                      dict(raw.get("metrics", {})))
    if expect_model is not None and ckpt.model_name != expect_model:
        raise ConfigError(f"checkpoint {path} holds model '{ckpt.model_name}', not '{expect_model}'")
    if expect_config is not None:
        diff = {k: (ckpt.model_config.get(k), v) for k, v in expect_config.items()
                if _norm(ckpt.model_config.get(k)) != _norm(v)}
        if diff:
            raise ConfigError(f"checkpoint {path} was made with another model configuration "
                              f"(key: (checkpoint, requested)): {diff}")
    return ckpt


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def ship_checkpoint(src: str | Path, dst: str | Path, *, note: dict[str, Any] | None = None,
                    int8: bool = False) -> Path:
    """Write a deployable copy of a checkpoint: float16 (or, with ``int8``, int8 matrices
    and float16 vectors) weights, no optimiser state.

    The training record keeps only its summary (epoch, steps, configuration) plus ``note``
    (e.g. the held-out scores of the model).
    """
    ckpt = load_checkpoint(src)
    keep = {k: v for k, v in ckpt.training.items() if k in ("epoch", "global_step", "config")}
    ckpt.training = {**keep, **(note or {})}
    return save_checkpoint(ckpt, dst, half=True, int8=int8)
