"""Reading and writing the released checkpoint layout: `config.json` + `diffusion_pytorch_model.safetensors`.

Sharded checkpoints (`diffusion_pytorch_model.safetensors.index.json` naming several `*.safetensors` files)
are read too. Everything goes through `safetensors.numpy`: no torch, and pickled files (`*.bin`, `*.pt`,
`*.ckpt`) are refused, never opened.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = WEIGHTS + ".index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

CONVERT_HINT = (
    "Pickled PyTorch weights are never unpickled here (loading them can execute arbitrary code). Convert them "
    "once, on a machine with torch, from a source you trust:\n"
    "  python -c \"import torch; from safetensors.torch import save_file; "
    "save_file({k: v.contiguous() for k, v in torch.load('IN.bin', map_location='cpu', weights_only=True)"
    ".items()}, 'diffusion_pytorch_model.safetensors')\""
)


class CheckpointError(ValueError):
    """A checkpoint directory or file that cannot be loaded as asked; the message lists every problem."""


def _read_file(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"cannot read {path} ({size} bytes): {e}. The file may be truncated or not a "
                              "safetensors file; download or convert it again.") from e


def read_config(directory: str | os.PathLike) -> dict:
    path = pathlib.Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json (expected the released layout: config.json + {WEIGHTS})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON: {e}") from e


def read_released_dir(directory: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(config dict, {torch key: numpy array in PyTorch layout}) of a released-layout directory."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config = read_config(directory)
    single, index = directory / WEIGHTS, directory / INDEX
    if single.is_file():
        return config, _read_file(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a safetensors index (needs a 'weight_map'): {e}") from e
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = directory / shard
            if not shard_path.is_file():
                raise CheckpointError(f"{index} names shard {shard}, which is missing from {directory}")
            part = _read_file(shard_path)
            expected = {k for k, v in weight_map.items() if v == shard}
            if set(part) != expected:
                raise CheckpointError(f"{shard_path}: holds {len(part)} tensors but the index assigns "
                                      f"{len(expected)}; differing keys: {sorted(set(part) ^ expected)[:10]}")
            tensors.update(part)
        return config, tensors
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{directory} holds only pickled weights {pickles}. {CONVERT_HINT}")
    raise CheckpointError(f"{directory}: no {WEIGHTS} and no {INDEX}")


def write_released_dir(directory: str | os.PathLike, config: dict, tensors: dict[str, np.ndarray], *,
                       max_shard_bytes: int | None = None) -> pathlib.Path:
    """Writes config.json and the safetensors weights (sharded with an index above `max_shard_bytes`)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    total = sum(v.nbytes for v in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(tensors, str(directory / WEIGHTS), metadata={"format": "pt"})
        return directory
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for key in sorted(tensors):
        if shards[-1] and size + tensors[key].nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += tensors[key].nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    (directory / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                              indent=2, sort_keys=True) + "\n")
    return directory
