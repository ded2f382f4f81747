"""Loading released checkpoints (e.g. the official FasterNet ``.pth`` files) strictly, with
errors that name the offending keys."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn


def load_official_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official FasterNet checkpoint into an (unfused) model, strictly; returns it.

    Accepts a raw state dict (the released ``fasternet_*.pth``), or a dict holding one under
    'state_dict' (PyTorch Lightning ``.ckpt``: its 'model.' key prefix is stripped and keys
    outside the model dropped) or under 'model'. Read with ``weights_only=True``.
    A missing file raises FileNotFoundError; an unreadable file or one whose keys or shapes
    do not match the model raises ValueError naming the first few offending keys. Only BN's
    ``num_batches_tracked`` counters, unused at inference, may be absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    _check_checkpoint_format(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or unsafe file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path} is not a checkpoint torch.load(weights_only=True) can read "
                         f"({type(exc).__name__}: {first_line})") from exc
    state_dict = _extract_state_dict(checkpoint, path)
    _check_matches(model, state_dict, path)
    model.load_state_dict(state_dict, strict=False)  # strictness checked above, with better messages
    return model


def _check_checkpoint_format(path: Path) -> None:
    """Refuse a file that is neither of torch.save's formats (a zip archive, or a legacy pickle,
    which starts with the pickle protocol byte 0x80), saying what it looks like; torch.load
    itself would only say e.g. 'KeyError: 101' of a text file."""
    with open(path, "rb") as f:
        head = f.read(512)
    if zipfile.is_zipfile(path) or head[:1] == b"\x80":
        return
    if not head:
        looks = "the file is empty"
    elif all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        looks = "it looks like a text file"
    else:
        looks = f"it starts with bytes {head[:8].hex(' ')}"
    raise ValueError(f"{path} is not a PyTorch checkpoint ({looks}; torch.save writes a zip archive, "
                     "e.g. the released fasternet_*.pth)")


def _extract_state_dict(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        state_dict = dict(checkpoint["state_dict"])
        if any(k.startswith("model.") for k in state_dict):  # Lightning: LitModel.model
            state_dict = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
    elif isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        state_dict = dict(checkpoint["model"])
    elif isinstance(checkpoint, Mapping):
        state_dict = dict(checkpoint)
    else:
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state_dict:
        raise ValueError(f"{path} does not hold a state dict of tensors"
                         + (f" (e.g. entry {bad[0]!r})" if bad else " (it is empty)"))
    return state_dict


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def _check_matches(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {tuple(v.shape)} in file vs {tuple(expected[k].shape)} in model"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_first(shapes, 3)}")
    hint = ""
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        hint = " (the model has no BatchNorm: load weights before fuse_bn)"
    raise ValueError(f"{path} does not match {type(model).__name__}: " + "; ".join(problems) + hint)
