"""Loading and saving GenXD UNets and SVD VAEs in the released (diffusers) checkpoint layout."""

from __future__ import annotations

import os

import jax.numpy as jnp

from genxd_jax.convert.safetensors_io import read_released_dir, write_released_dir
from genxd_jax.convert.torch_layout import flat_torch_state, load_torch_state
from genxd_jax.models.unet import UNetConfig, UNetMVTemporalConditionModel, abstract_unet
from genxd_jax.models.vae import AutoencoderKLTemporalDecoder, VAEConfig, abstract_vae
from genxd_jax.sharding import DEFAULT_RULES


def load_unet(path: str | os.PathLike, *, dtype=jnp.float32, compute_dtype=None, mesh=None,
              rules=DEFAULT_RULES, remat_policy: str | None = None,
              attention_impl: str | None = None) -> UNetMVTemporalConditionModel:
    """Loads a released-layout UNet directory (`config.json` + safetensors).

    Args:
      path: the `unet/` directory.
      dtype: parameter dtype (float32 unless given).
      compute_dtype: activation dtype (default: `dtype`); e.g. bfloat16 with float32 parameters.
      mesh: if given, parameters are placed on it by their logical axis names (FSDP etc.) via `rules`.
      remat_policy, attention_impl: see `UNetMVTemporalConditionModel`.
    """
    raw, tensors = read_released_dir(path)
    config = UNetConfig.from_dict(raw)
    abstract = abstract_unet(config, dtype=compute_dtype or dtype, param_dtype=dtype, remat_policy=remat_policy,
                             attention_impl=attention_impl)
    return load_torch_state(abstract, tensors, mesh=mesh, rules=rules, source=str(path))


def load_vae(path: str | os.PathLike, *, dtype=jnp.float32, compute_dtype=None, mesh=None,
             rules=DEFAULT_RULES) -> AutoencoderKLTemporalDecoder:
    """Loads a released-layout VAE directory (`AutoencoderKLTemporalDecoder`)."""
    raw, tensors = read_released_dir(path)
    config = VAEConfig.from_dict(raw)
    abstract = abstract_vae(config, dtype=compute_dtype or dtype, param_dtype=dtype)
    return load_torch_state(abstract, tensors, mesh=mesh, rules=rules, source=str(path))


def save_pretrained(model: UNetMVTemporalConditionModel | AutoencoderKLTemporalDecoder,
                    path: str | os.PathLike, *, max_shard_bytes: int | None = None):
    """Writes `model` in the released layout (PyTorch keys and layouts, parameter dtype kept)."""
    return write_released_dir(path, model.config.to_dict(), flat_torch_state(model),
                              max_shard_bytes=max_shard_bytes)
