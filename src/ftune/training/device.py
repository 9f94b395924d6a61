"""Pick the device and the precision for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cpu | cuda | mps
    precision: str  # fp32 | bf16 | fp16


def plan_device(device: str = "auto", precision: str = "auto") -> DevicePlan:
    """CUDA, then MPS, then CPU; fp32 on CPU / MPS, bf16 on CUDA when supported, else fp16."""
    import torch

    from ftune.errors import FtuneError

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise FtuneError("train.device = 'cuda': no CUDA GPU is visible to torch here")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FtuneError("train.device = 'mps': MPS is not available here")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    return DevicePlan(device, precision)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts. A 4-bit weight (bitsandbytes ``Params4bit``) is
    stored two values per byte element; it counts as the weights it holds."""
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel() * (2 if type(parameter).__name__ == "Params4bit" else 1)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total
