"""Conversion between the released PyTorch (diffusers) checkpoint layout and genxd_jax's NNX models."""

from genxd_jax.convert.safetensors_io import CheckpointError, read_released_dir, write_released_dir
from genxd_jax.convert.torch_layout import (
    flat_torch_state,
    load_torch_state,
    torch_key,
)

__all__ = [
    "CheckpointError",
    "read_released_dir",
    "write_released_dir",
    "flat_torch_state",
    "load_torch_state",
    "torch_key",
]
