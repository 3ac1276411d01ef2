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


#: Values per scale of the quantized storage (:func:`quantize_weights`).
INT8_GROUP = 32
#: Bit widths of the quantized storage.
WEIGHT_BITS = (8, 6)


def quantize_weights(t: torch.Tensor, bits: int = 8) -> dict[str, Any]:
    """Symmetric ``bits``-bit storage of a float tensor, one float32 scale per group of
    :data:`INT8_GROUP` consecutive values (flattened, zero-padded):
    ``q = round(v / s)``, ``s = max|v| / (2^(bits-1) - 1)`` over the group, so every value
    is kept to within ``s / 2``. 8 bits are stored as int8; 6 bits as ``q + 32`` packed four
    to three bytes."""
    if bits not in WEIGHT_BITS:
        raise ConfigError(f"weight bits must be one of {WEIGHT_BITS}, got {bits!r}")
    flat = t.detach().cpu().float().reshape(-1)
    pad = (-flat.numel()) % INT8_GROUP
    groups = torch.cat([flat, flat.new_zeros(pad)]).view(-1, INT8_GROUP)
    qmax = 2 ** (bits - 1) - 1
    scale = groups.abs().amax(1) / qmax
    q = torch.round(groups / scale.clamp(min=torch.finfo(torch.float32).tiny)[:, None])
    entry: dict[str, Any] = {"scale": scale, "shape": list(t.shape), "bits": bits}
    if bits == 8:
        entry["q"] = q.to(torch.int8)
    else:  # four 6-bit codes (q + 32 in [1, 63]) -> one 24-bit word -> three bytes
        code = (q.to(torch.int32) + 32).view(-1, 4)
        word = code[:, 0] | (code[:, 1] << 6) | (code[:, 2] << 12) | (code[:, 3] << 18)
        entry["q"] = torch.stack([word & 255, (word >> 8) & 255, word >> 16], 1).to(torch.uint8)
    return entry


def dequantize_weights(entry: dict[str, Any]) -> torch.Tensor:
    """Float32 tensor of a :func:`quantize_weights` entry."""
    shape = [int(d) for d in entry["shape"]]
    n = 1
    for d in shape:
        n *= d
    bits = int(entry.get("bits", 8))
    scale = entry["scale"].float()
    if bits == 8:
        q = entry["q"].float()
    elif bits == 6:
        b = entry["q"].to(torch.int32)
        word = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        code = torch.stack([(word >> s) & 63 for s in (0, 6, 12, 18)], 1)
        q = (code - 32).float().reshape(-1, INT8_GROUP)
    else:
        raise ValueError(f"unknown bit width {bits}")
    values = q.reshape(scale.shape[0], INT8_GROUP) * scale[:, None]
    return values.reshape(-1)[:n].reshape(shape)


def save_checkpoint(ckpt: Checkpoint, path: str | Path, *, half: bool = False,
                    weight_bits: int | None = None) -> Path:
    """Write ``ckpt`` atomically.

    ``half`` stores float weights as float16 (shipping); ``weight_bits`` (8 or 6) also
    stores every float matrix of at least :data:`INT8_GROUP` values with that many bits and
    a float32 scale per group (:func:`quantize_weights`; 8 bits: half the size of float16,
    6 bits: 0.4 of it; for the shipped models). Loading restores float32 either way.
    """
    if weight_bits is not None and weight_bits not in WEIGHT_BITS:
        raise ConfigError(f"weight_bits must be one of {WEIGHT_BITS} or None, got {weight_bits!r}")
    state, quantized = {}, {}
    for k, v in ckpt.state_dict.items():
        if (weight_bits and v.is_floating_point() and v.dim() >= 2
                and v.numel() >= INT8_GROUP):
            quantized[k] = quantize_weights(v, weight_bits)
        elif (half or weight_bits) and v.is_floating_point():
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
            state[k] = dequantize_weights(entry)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise InputFileError(path, f"quantized weights of '{k}' are malformed ({exc})") from None
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
                    weight_bits: int | None = None) -> Path:
    """Write a deployable copy of a checkpoint: float16 weights (with ``weight_bits``, 8- or
    6-bit matrices and float16 vectors), no optimiser state.

    The training record keeps only its summary (epoch, steps, configuration) plus ``note``
    (e.g. the held-out scores of the model).
    """
    ckpt = load_checkpoint(src)
    keep = {k: v for k, v in ckpt.training.items() if k in ("epoch", "global_step", "config")}
    ckpt.training = {**keep, **(note or {})}
    return save_checkpoint(ckpt, dst, half=True, weight_bits=weight_bits)
