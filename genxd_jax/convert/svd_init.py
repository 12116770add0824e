"""Initialising a GenXD UNet from a Stable Video Diffusion UNet, as the official `from_pretrained_model` does.

In PyTorch key space:
- a key present in SVD with the same shape is copied;
- `mv_res_block` tensors come from SVD's `temporal_res_block`, `multiview_transformer_blocks` from
  `temporal_transformer_blocks`;
- `conv_in.weight` (O, 8, 3, 3) is zero-padded along input channels to GenXD's 15 (rays and mask start at 0);
- `add_embedding.linear_1.weight` keeps its first 512 input columns (SVD's noise-augmentation part dropped);
- `motion_embedding.*` and every blender logit (`spatial_mv_factor` 0.5, `gamma` 5.0) keep their fresh
  initialisation; SVD's cross-attention (`attn2`, `norm2`) and `mix_factor`s are dropped.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from flax import nnx

from genxd_jax.convert.safetensors_io import CheckpointError
from genxd_jax.convert.torch_layout import flat_torch_state, load_torch_state

FRESH = re.compile(r"^motion_embedding\.|\.time_mixer\.(spatial_mv_factor|gamma)$")
SOURCE_RENAMES = (("mv_res_block", "temporal_res_block"),
                  ("multiview_transformer_blocks", "temporal_transformer_blocks"))


@dataclasses.dataclass
class SVDInitReport:
    """What the initialisation did, key by key (PyTorch keys)."""

    copied: dict[str, str] = dataclasses.field(default_factory=dict)      # genxd key -> svd key
    adapted: dict[str, str] = dataclasses.field(default_factory=dict)     # genxd key -> how
    fresh: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)          # svd keys not used


def svd_source_key(genxd_key: str) -> str:
    for new, old in SOURCE_RENAMES:
        if new in genxd_key:
            return genxd_key.replace(new, old)
    return genxd_key


def genxd_tensors_from_svd(svd: dict[str, np.ndarray], fresh: dict[str, np.ndarray]
                           ) -> tuple[dict[str, np.ndarray], SVDInitReport]:
    """GenXD tensors (PyTorch layout) from SVD tensors; `fresh` is a freshly initialised GenXD state."""
    out, report, problems = {}, SVDInitReport(), []
    for key, init in fresh.items():
        src = svd_source_key(key)
        if FRESH.search(key):
            out[key] = init
            report.fresh.append(key)
        elif src not in svd:
            problems.append(f"{key}: no SVD tensor {src}")
        elif key == "conv_in.weight" and svd[src].shape[1] <= init.shape[1] and \
                svd[src].shape[:1] + svd[src].shape[2:] == init.shape[:1] + init.shape[2:]:
            w = np.zeros(init.shape, svd[src].dtype)
            w[:, :svd[src].shape[1]] = svd[src]
            out[key] = w
            report.adapted[key] = f"zero-pad dim 1 from {svd[src].shape[1]} to {init.shape[1]}"
        elif key == "add_embedding.linear_1.weight" and svd[src].shape[1] >= init.shape[1] and \
                svd[src].shape[0] == init.shape[0]:
            out[key] = np.ascontiguousarray(svd[src][:, :init.shape[1]])
            report.adapted[key] = f"keep first {init.shape[1]} of {svd[src].shape[1]} along dim 1"
        elif svd[src].shape != init.shape:
            problems.append(f"{key}: SVD {src} has shape {svd[src].shape}, GenXD needs {init.shape}")
        else:
            out[key] = svd[src]
            report.copied[key] = src
    if problems:
        raise CheckpointError("the SVD UNet does not fit this GenXD config:\n  " + "\n  ".join(problems[:30]))
    used = set(report.copied.values()) | {svd_source_key(k) for k in report.adapted}
    report.dropped = sorted(set(svd) - used)
    return out, report


def init_unet_from_svd(unet: nnx.Module, svd: dict[str, np.ndarray], *, mesh=None
                       ) -> tuple[nnx.Module, SVDInitReport]:
    """A copy of the freshly initialised GenXD `unet` with every SVD-derived tensor filled in."""
    tensors, report = genxd_tensors_from_svd(svd, flat_torch_state(unet))
    return load_torch_state(unet, tensors, mesh=mesh, source="SVD initialisation"), report
