"""Resumable state: parameters, Adam moments, epoch, and what it was trained on.

Production's checkpoints held weights only, so a resumed fit restarted Adam and drew other
noise. Here the gate noise is a function of (seed, epoch), so no generator state is needed.
Everything here is a tensor or plain value so `torch.load(weights_only=True)` (no
pickle code execution) reads it back.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from pipeline.core.atomic import write_bytes
from pipeline.core.errors import InputError

FORMAT = 3  # 3: λ_L0 per epoch and the next one (record budgets); 2: counter-based noise


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    # Serialized in memory, written by Python: a full disk is an OSError naming the file,
    # not torch's "unexpected pos" from its zip writer.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | Path, identity: dict[str, Any], max_epoch: int, device: torch.device
) -> dict[str, Any]:
    """Load a checkpoint and refuse one trained on other data or other hyperparameters."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "checkpoint not found",
                         "pass the checkpoint.pt of an earlier fit, or drop --resume-from")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise InputError(path, None, f"unreadable checkpoint ({exc})",
                         "pass a checkpoint.pt written by `calibrate fit`") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(path, "format", "not a fit checkpoint of this version",
                         "pass a checkpoint.pt written by this version of `calibrate fit`")
    saved = state["identity"]
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}"
             for k, v in identity.items() if saved.get(k) != v]
    if diffs:
        raise InputError(path, "identity", "checkpoint is from a different fit ("
                         + "; ".join(diffs) + ")",
                         "resume with the same package, target config and hyperparameters, "
                         "or start a fresh fit")
    if state["epoch"] > max_epoch:
        raise InputError(path, "epochs", f"checkpoint is at epoch {state['epoch']}, "
                         f"beyond the requested {max_epoch}",
                         f"pass --epochs >= {state['epoch']}")
    return state
