"""Depth Anything weights → :class:`genxd_jax.curation.depth_anything.DepthAnythingForDepthEstimation`.

Two sources:

* **Hugging Face safetensors** (``depth-anything/Depth-Anything-V2-Small-hf``: ``model.safetensors`` and
  ``config.json``), read with NumPy (no torch). Keys are ``DepthAnythingForDepthEstimation.state_dict()`` keys;
  both spellings of the attention projections are accepted, the transformers ≥ 5 one
  (``attention.q_proj``/``k_proj``/``v_proj``/``o_proj``) and the one the hub files carry
  (``attention.attention.query``/``key``/``value``, ``attention.output.dense``). Loading is strict: one
  :class:`~genxd_jax.convert.safetensors_io.CheckpointError` names the file and lists every missing,
  unexpected or mis-shaped tensor.
* **The original release** (``depth_anything_v2_vits.pth`` from ``DepthAnything/Depth-Anything-V2``):
  :func:`convert_original_checkpoint` — the only place torch is imported (lazily, ``torch.load(...,
  weights_only=True)``, which refuses arbitrary pickled objects) — renames the original keys to the Hugging Face
  ones as transformers' ``convert_depth_anything_to_hf.py`` does (``pretrained.blocks.N`` →
  ``backbone.encoder.layer.N``, the fused ``attn.qkv`` split into q/k/v, ``depth_head.projects.i`` →
  ``neck.reassemble_stage.layers.i.projection``, ``scratch.refinenet{1..4}`` → ``neck.fusion_stage.layers.{3..0}``,
  ``scratch.layer{k}_rn`` → ``neck.convs.{k-1}``, ``scratch.output_conv*`` → ``head.conv{1,2,3}``) and writes
  ``model.safetensors`` + ``config.json``. Run it once, on weights you trust:
  ``python -m genxd_jax.tools.convert_depth from-pth depth_anything_v2_vits.pth da2_small/``.

The architecture (:func:`infer_config`) is read off the weight shapes — width, depth, MLP width, patch size,
position grid, neck and head widths — and every field a ``config.json`` beside the weights states overrides it
(hub files state only what differs from transformers' defaults). Without a ``config.json`` three things are
assumed: the attention heads (width / 64, true of every DINOv2 size), the blocks the neck reads (the V2
releases' ``out_indices``; V1 checkpoints need their ``config.json``) and a relative head (a metric model needs
its ``config.json`` for ``depth_estimation_type`` and ``max_depth``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import tempfile

import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from genxd_jax.convert.safetensors_io import PICKLE_SUFFIXES, CheckpointError, _read_file
from genxd_jax.convert.torch_layout import load_torch_state
from genxd_jax.curation.depth_anything import (
    V2_OUT_INDICES,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    abstract_depth_anything,
)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
DINOV2_HEAD_DIM = 64

# hub spelling → transformers ≥ 5 `state_dict()` spelling (the NNX attribute paths)
_LEGACY_NAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)

PTH_HINT = ("Pickled weights are never unpickled when loading (that can execute code). Convert the original "
            "release once, from a source you trust, on a machine with torch:\n"
            "  python -m genxd_jax.tools.convert_depth from-pth {path} OUT_DIR\n"
            "or download the Hugging Face safetensors (depth-anything/Depth-Anything-V2-Small-hf).")


def canonical_keys(tensors: dict[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Renames the hub's attention keys to the transformers ≥ 5 names; other keys pass through unchanged."""
    out: dict[str, np.ndarray] = {}
    clashes = []
    for key, value in tensors.items():
        new = key
        for old, repl in _LEGACY_NAMES:
            new = new.replace(old, repl)
        if new in out:
            clashes.append(f"{key} and another key both map to {new}")
        out[new] = value
    if clashes:
        raise CheckpointError(f"{source} spells some attention weights twice (old and new transformers names):\n  "
                              + "\n  ".join(clashes[:20]))
    return out


def locate(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path | None]:
    """(weights file, config.json or None) for a ``model.safetensors`` path or the directory holding it."""
    path = pathlib.Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: {PTH_HINT.format(path=path)}")
    if path.is_dir():
        weights = path / WEIGHTS
        if not weights.is_file():
            candidates = sorted(p.name for p in path.glob("*.safetensors"))
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
            if len(candidates) == 1:
                weights = path / candidates[0]
            elif pickles and not candidates:
                raise CheckpointError(f"{path} holds only pickled weights {pickles}. "
                                      + PTH_HINT.format(path=path / pickles[0]))
            else:
                raise CheckpointError(f"{path}: no {WEIGHTS}" + (f" (found {candidates}; pass the file)"
                                                                 if candidates else ""))
        directory = path
    elif path.is_file():
        weights, directory = path, path.parent
    else:
        raise CheckpointError(f"Depth Anything weights {path} do not exist")
    config = directory / CONFIG
    return weights, (config if config.is_file() else None)


def _shape(tensors: dict[str, np.ndarray], key: str, source: str) -> tuple[int, ...]:
    if key not in tensors:
        sample = ", ".join(sorted(tensors)[:5])
        raise CheckpointError(f"{source} has no tensor {key!r}, so it is not a Depth Anything "
                              f"(DepthAnythingForDepthEstimation) checkpoint; its first keys: {sample}")
    return tuple(tensors[key].shape)


def infer_config(tensors: dict[str, np.ndarray], *, source: str = "checkpoint", hf_config: dict | None = None,
                 num_attention_heads: int | None = None) -> DepthAnythingConfig:
    """The architecture of canonical-key ``tensors``: read off the shapes (see the module docstring for what is
    assumed; ``num_attention_heads`` overrides the width / 64 rule), then overridden by every field that
    ``hf_config`` (a transformers config.json dict) states."""
    if hf_config is not None and num_attention_heads is None:
        stated = (hf_config.get("backbone_config") or {}) if isinstance(hf_config, dict) else {}
        num_attention_heads = stated.get("num_attention_heads") if isinstance(stated, dict) else None
    if hf_config is None:
        return _config_from_shapes(tensors, source, num_attention_heads)
    try:  # a config.json decides; the shapes only fill in what it leaves unstated
        base = _config_from_shapes(tensors, source, num_attention_heads)
    except CheckpointError:  # malformed weights: the strict loader then lists every problem
        base = None
    try:
        return DepthAnythingConfig.from_hf_dict(hf_config, source=source, defaults=base)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: {e}") from e


def _config_from_shapes(tensors: dict[str, np.ndarray], source: str,
                        num_attention_heads: int | None) -> DepthAnythingConfig:
    hidden = _shape(tensors, "backbone.embeddings.cls_token", source)[-1]
    patch_w = _shape(tensors, "backbone.embeddings.patch_embeddings.projection.weight", source)
    layers = {int(m.group(1)) for k in tensors if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", k))}
    if not layers or sorted(layers) != list(range(len(layers))):
        raise CheckpointError(f"{source}: encoder layers {sorted(layers)} are not numbered 0..N-1")
    num_layers = len(layers)
    positions = _shape(tensors, "backbone.embeddings.position_embeddings", source)[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise CheckpointError(f"{source}: {positions} position embeddings do not form a square grid")
    neck = [_shape(tensors, f"neck.reassemble_stage.layers.{i}.projection.weight", source)[0] for i in range(4)]
    factors = []
    for i in range(4):
        key = f"neck.reassemble_stage.layers.{i}.resize.weight"
        if key not in tensors:
            factors.append(1)
        else:  # ConvTranspose2d(k, stride=k) upsamples by k; the 3×3 stride-2 Conv2d halves
            k = tensors[key].shape[-1]
            factors.append(0.5 if k == 3 else k)
    heads = num_attention_heads or hidden // DINOV2_HEAD_DIM
    if not num_attention_heads and hidden % DINOV2_HEAD_DIM:
        raise CheckpointError(f"{source}: width {hidden} is not a multiple of DINOv2's head size 64; "
                              "put the transformers config.json next to the weights (or give the head count)")
    try:
        return DepthAnythingConfig(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads,
            mlp_hidden_size=_shape(tensors, "backbone.encoder.layer.0.mlp.fc1.weight", source)[0],
            patch_size=patch_w[-1], image_size=grid * patch_w[-1], num_channels=patch_w[1],
            qkv_bias="backbone.encoder.layer.0.attention.q_proj.bias" in tensors,
            out_indices=V2_OUT_INDICES.get(num_layers, tuple(range(num_layers - 3, num_layers + 1))),
            reassemble_hidden_size=_shape(tensors, "neck.reassemble_stage.layers.0.projection.weight", source)[1],
            reassemble_factors=tuple(factors), neck_hidden_sizes=tuple(neck),
            fusion_hidden_size=_shape(tensors, "neck.convs.0.weight", source)[0],
            head_hidden_size=_shape(tensors, "head.conv2.weight", source)[0])
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from e


def read_checkpoint(path: str | os.PathLike) -> tuple[DepthAnythingConfig, dict[str, np.ndarray], pathlib.Path]:
    """(architecture, canonical-key tensors in PyTorch layout, weights file) of a safetensors checkpoint."""
    weights, config_path = locate(path)
    hf_config = None
    if config_path is not None:
        try:
            hf_config = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{config_path}: invalid JSON: {e}") from e
    tensors = canonical_keys(_read_file(weights), source=str(weights))
    source = str(config_path) if config_path is not None else str(weights)
    return infer_config(tensors, source=source, hf_config=hf_config), tensors, weights


def load_network(path: str | os.PathLike, *, dtype=jnp.float32, compute_dtype=None,
                 attention_impl: str | None = None,
                 interpolate_offset: float | None = None) -> DepthAnythingForDepthEstimation:
    """The network with the weights at ``path`` (see :func:`locate`); parameters cast to ``dtype``."""
    config, tensors, weights = read_checkpoint(path)
    config = dataclasses.replace(config, interpolate_offset=interpolate_offset)
    abstract = abstract_depth_anything(config, dtype=compute_dtype or dtype, param_dtype=dtype,
                                       attention_impl=attention_impl)
    return load_torch_state(abstract, tensors, source=str(weights))


# ----------------------------------------------------------------------------------------------------------------
# The original release's `.pth` (DepthAnything/Depth-Anything-V2, `DepthAnythingV2` module keys).

_ORIGINAL_RULES = [
    (r"pretrained\.cls_token", "backbone.embeddings.cls_token"),
    (r"pretrained\.mask_token", "backbone.embeddings.mask_token"),
    (r"pretrained\.pos_embed", "backbone.embeddings.position_embeddings"),
    (r"pretrained\.patch_embed\.proj\.(weight|bias)", r"backbone.embeddings.patch_embeddings.projection.\1"),
    (r"pretrained\.blocks\.(\d+)\.ls([12])\.gamma", r"backbone.encoder.layer.\1.layer_scale\2.lambda1"),
    (r"pretrained\.blocks\.(\d+)\.(norm[12]|mlp\.fc[12])\.(weight|bias)", r"backbone.encoder.layer.\1.\2.\3"),
    (r"pretrained\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"backbone.encoder.layer.\1.attention.o_proj.\2"),
    (r"pretrained\.norm\.(weight|bias)", r"backbone.layernorm.\1"),
    (r"depth_head\.projects\.(\d)\.(weight|bias)", r"neck.reassemble_stage.layers.\1.projection.\2"),
    (r"depth_head\.resize_layers\.([013])\.(weight|bias)", r"neck.reassemble_stage.layers.\1.resize.\2"),
    (r"depth_head\.scratch\.layer([1-4])_rn\.weight", lambda m: f"neck.convs.{int(m.group(1)) - 1}.weight"),
    (r"depth_head\.scratch\.refinenet([1-4])\.out_conv\.(weight|bias)",
     lambda m: f"neck.fusion_stage.layers.{4 - int(m.group(1))}.projection.{m.group(2)}"),
    (r"depth_head\.scratch\.refinenet([1-4])\.resConfUnit([12])\.conv([12])\.(weight|bias)",
     lambda m: (f"neck.fusion_stage.layers.{4 - int(m.group(1))}.residual_layer{m.group(2)}"
                f".convolution{m.group(3)}.{m.group(4)}")),
    (r"depth_head\.scratch\.output_conv1\.(weight|bias)", r"head.conv1.\1"),
    (r"depth_head\.scratch\.output_conv2\.0\.(weight|bias)", r"head.conv2.\1"),
    (r"depth_head\.scratch\.output_conv2\.2\.(weight|bias)", r"head.conv3.\1"),
]
_QKV = re.compile(r"pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def original_to_hf(state: dict[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Original ``DepthAnythingV2`` state dict → canonical Hugging Face keys (fused qkv split in q, k, v order).

    Every key must be understood: unknown ones (e.g. ``readout_projects`` of a ``use_clstoken`` model, or a
    ``module.`` prefix) are reported together in a :class:`CheckpointError`.
    """
    out: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state.items():
        if m := _QKV.fullmatch(key):
            if value.shape[0] % 3:
                raise CheckpointError(f"{source}: {key} has shape {value.shape}; its first axis must be 3·width")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                out[f"backbone.encoder.layer.{m.group(1)}.attention.{name}.{m.group(2)}"] = part
            continue
        for pattern, repl in _ORIGINAL_RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} keys are not part of a Depth Anything V2 checkpoint "
                              "(DepthAnythingV2 without readout projections):\n  " + "\n  ".join(unknown[:20]))
    return out


def _load_pth(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch  # only here: converting the original release is a one-off step on a machine with torch
    except ImportError as e:
        raise RuntimeError(f"converting {path} needs torch (pip install torch); loading converted safetensors "
                           "does not") from e
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt or unsafe pickles
        raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {e}") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        out[key] = value.contiguous().numpy()
    return out


def write_checkpoint(out_dir: str | os.PathLike, config: DepthAnythingConfig,
                     tensors: dict[str, np.ndarray]) -> pathlib.Path:
    """Writes ``model.safetensors`` + transformers ``config.json`` into ``out_dir``, each atomically."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".model-", suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
        os.replace(tmp, out_dir / WEIGHTS)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    tmp_config = out_dir / (CONFIG + ".tmp")
    tmp_config.write_text(json.dumps(config.to_hf_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp_config, out_dir / CONFIG)
    return out_dir


def convert_original_checkpoint(pth: str | os.PathLike, out_dir: str | os.PathLike, *,
                                depth_estimation_type: str = "relative", max_depth: float = 1.0,
                                num_attention_heads: int | None = None) -> pathlib.Path:
    """``depth_anything_v2_vit{s,b,l}.pth`` → ``out_dir/{model.safetensors,config.json}`` (HF layout).

    ``depth_estimation_type="metric"`` with ``max_depth`` (20 indoor, 80 outdoor) for the metric checkpoints.
    ``num_attention_heads`` defaults to width / 64 (every released size). The result is checked by loading it
    into the network before anything is written.
    """
    pth = pathlib.Path(pth)
    if not pth.is_file():
        raise CheckpointError(f"{pth} does not exist")
    tensors = original_to_hf(_load_pth(pth), source=str(pth))
    config = infer_config(tensors, source=str(pth), num_attention_heads=num_attention_heads)
    config = dataclasses.replace(config, depth_estimation_type=depth_estimation_type, max_depth=float(max_depth))
    load_torch_state(abstract_depth_anything(config), tensors, source=str(pth))  # strict check
    return write_checkpoint(out_dir, config, tensors)


__all__ = ["WEIGHTS", "canonical_keys", "locate", "infer_config", "read_checkpoint", "load_network",
           "original_to_hf", "convert_original_checkpoint", "write_checkpoint"]
