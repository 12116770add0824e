"""Depth Anything V2 (relative and metric) in Flax NNX, channels-last, with the official pre/post-processing.

The network is Hugging Face transformers' ``DepthAnythingForDepthEstimation`` (``modeling_depth_anything.py``
with the ``modeling_dinov2.py`` backbone) re-implemented module for module, so that NNX attribute paths are the
PyTorch ``state_dict()`` keys of transformers ≥ 5 (``backbone.encoder.layer.3.attention.q_proj.weight`` is
``model.backbone.encoder.layer[3].attention.q_proj.kernel``, transposed to channels-last);
:mod:`genxd_jax.convert.depth_anything` also accepts the older names the hub's ``model.safetensors`` files use
(``attention.attention.query``, ``attention.output.dense``) and the original ``depth_anything_v2_vit*.pth``.

Architecture (DINOv2 ViT with LayerScale, no registers, patch 14 → DPT neck → head):

* backbone: 14×14 patch embedding, a CLS token, learned position embeddings for a ``image_size/14`` square grid
  that are bicubically resized (PyTorch ``interpolate(..., mode="bicubic", align_corners=False)``, A = −0.75) to
  the input's patch grid (as transformers does; ``interpolate_offset=0.1`` gives the original code's slightly
  different ``scale_factor`` form), pre-norm blocks ``x + γ₁·attn(LN(x))``, ``x + γ₂·mlp(LN(x))`` (exact GELU), and the
  final LayerNorm applied to the four hidden states in ``out_indices`` (1-based: index i is the output of block i);
* neck: each hidden state without its CLS token becomes a (h/14, w/14) map, is projected by a 1×1 conv to
  ``neck_hidden_sizes[i]`` channels and resized by ``reassemble_factors[i]`` (transposed conv ×4, ×2, identity,
  stride-2 conv), mapped to ``fusion_hidden_size`` channels by a bias-free 3×3 conv, then fused coarse to fine
  by residual conv units and bilinear (align_corners=True) upsampling;
* head: 3×3 conv to half the channels, bilinear upsampling to 14·(h/14, w/14), 3×3 conv + ReLU, 1×1 conv, then
  ReLU (``"relative"``: relative disparity, larger = nearer) or sigmoid × ``max_depth`` (``"metric"``: metres).

:class:`DepthAnythingV2` wraps a model as the curation :class:`~genxd_jax.curation.depth.DepthModel`: an RGB uint8
frame (H, W, 3) is resized as the official ``image2tensor`` does (keep the aspect ratio, both sides at least
``input_size`` = 518, multiples of 14, bicubic, :func:`network_input_size`), normalised with the ImageNet mean
and std, run through the jitted network, and the prediction is resized back to (H, W) bilinearly with
align_corners=True as the official ``infer_image`` does. Load converted weights with :func:`load_depth_anything`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Literal, Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.models.attention import dot_product_attention
from genxd_jax.models.layers import DTypes, InitKeys, conv2d, layer_norm, linear, materialize
from genxd_jax.resampling import linear_resize_matrix

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Block indices (1-based, transformers' `out_indices`) that the DPT neck reads, by depth of the ViT; these are
# the V2 releases' values (the original code's `intermediate_layer_idx` plus one). V1 used the last four blocks,
# which is why a config.json next to the weights, when present, always wins.
V2_OUT_INDICES = {12: (3, 6, 9, 12), 24: (5, 12, 18, 24), 40: (10, 20, 30, 40)}


@dataclasses.dataclass(frozen=True)
class DepthAnythingConfig:
    """The architecture of a Depth Anything (V1/V2) model; field names follow transformers' configs.

    ``image_size`` is the pre-training resolution that sets the position-embedding grid (518 → 37×37); the model
    runs at any size whose sides are multiples of ``patch_size`` (other pixels are dropped by the patch conv).

    ``interpolate_offset``: how the position embeddings are resized to another grid. ``None`` (default) is
    transformers' ``interpolate(size=(h, w))``, the reference this port matches; ``0.1`` reproduces the original
    DINOv2 / Depth-Anything-V2 code, ``interpolate(scale_factor=((h + 0.1)/37, (w + 0.1)/37))``, whose source
    coordinates differ slightly (PyTorch then samples at (d + 0.5)/scale − 0.5).
    """

    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    mlp_hidden_size: int = 1536
    layer_norm_eps: float = 1e-6
    patch_size: int = 14
    image_size: int = 518
    num_channels: int = 3
    qkv_bias: bool = True
    out_indices: tuple[int, ...] = (3, 6, 9, 12)
    apply_layernorm: bool = True
    reassemble_hidden_size: int = 384
    reassemble_factors: tuple[float, ...] = (4, 2, 1, 0.5)
    neck_hidden_sizes: tuple[int, ...] = (48, 96, 192, 384)
    fusion_hidden_size: int = 64
    head_hidden_size: int = 32
    head_in_index: int = -1
    depth_estimation_type: Literal["relative", "metric"] = "relative"
    max_depth: float = 1.0
    interpolate_offset: float | None = None

    def __post_init__(self):
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by "
                            f"num_attention_heads {self.num_attention_heads}")
        if len(self.out_indices) != len(self.neck_hidden_sizes) or len(self.reassemble_factors) != len(
                self.neck_hidden_sizes):
            problems.append(f"out_indices {self.out_indices}, reassemble_factors {self.reassemble_factors} and "
                            f"neck_hidden_sizes {self.neck_hidden_sizes} must have the same length")
        if any(not 0 <= i <= self.num_hidden_layers for i in self.out_indices):
            problems.append(f"out_indices {self.out_indices} must lie in [0, {self.num_hidden_layers}]")
        for f in self.reassemble_factors:
            if not (f == 1 or (f > 1 and float(f).is_integer()) or (0 < f < 1 and float(1 / f).is_integer())):
                problems.append(f"reassemble factor {f} is neither an integer ≥ 1 nor 1/integer")
        if self.depth_estimation_type not in ("relative", "metric"):
            problems.append(f"depth_estimation_type must be 'relative' or 'metric', got "
                            f"{self.depth_estimation_type!r}")
        if problems:
            raise ValueError("invalid DepthAnythingConfig: " + "; ".join(problems))

    @property
    def kind(self) -> Literal["depth", "disparity"]:
        """What the output measures: relative models predict disparity, metric ones depth in metres."""
        return "disparity" if self.depth_estimation_type == "relative" else "depth"

    @property
    def num_positions(self) -> int:
        """Patch positions of the pre-training grid, (image_size // patch_size)²."""
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_hf_dict(cls, config: dict, *, source: str = "config.json",
                     defaults: "DepthAnythingConfig | None" = None) -> "DepthAnythingConfig":
        """From a transformers ``DepthAnythingConfig`` dict (``config.json`` next to ``model.safetensors``).

        Hub files often state only what differs from transformers' defaults; every field the file does not
        state comes from ``defaults`` (the loader passes the architecture read off the weight shapes), else
        from this class's defaults (ViT-S).
        """
        base = defaults if defaults is not None else cls()
        if not isinstance(config, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(config).__name__}")
        backbone = config.get("backbone_config") or {}
        if not isinstance(backbone, dict):
            raise ValueError(f"{source}: backbone_config must be an object")
        if backbone.get("model_type", "dinov2") != "dinov2":
            raise ValueError(f"{source}: backbone model_type {backbone.get('model_type')!r}; only 'dinov2' is "
                             "supported")
        if backbone.get("use_swiglu_ffn", False):
            raise ValueError(f"{source}: use_swiglu_ffn (the ViT-g backbone) is not supported")
        if backbone.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{source}: hidden_act {backbone.get('hidden_act')!r}; only 'gelu' is supported")

        def square(name, value):
            if isinstance(value, (list, tuple)):
                if len(set(value)) != 1:
                    raise ValueError(f"{source}: non-square {name} {value} is not supported")
                return int(value[0])
            return int(value)

        hidden = int(backbone.get("hidden_size", base.hidden_size))
        layers = int(backbone.get("num_hidden_layers", base.num_hidden_layers))
        out_indices = backbone.get("out_indices")
        if out_indices is None and backbone.get("out_features"):
            out_indices = [int(name.removeprefix("stage")) for name in backbone["out_features"]]
        if out_indices is None:
            out_indices = base.out_indices
        mlp = base.mlp_hidden_size if "mlp_ratio" not in backbone else int(hidden * backbone["mlp_ratio"])
        patch = config.get("patch_size", backbone.get("patch_size", base.patch_size))
        return cls(
            hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=int(backbone.get("num_attention_heads", base.num_attention_heads)),
            mlp_hidden_size=mlp, layer_norm_eps=float(backbone.get("layer_norm_eps", base.layer_norm_eps)),
            patch_size=square("patch_size", patch),
            image_size=square("image_size", backbone.get("image_size", base.image_size)),
            num_channels=int(backbone.get("num_channels", base.num_channels)),
            qkv_bias=bool(backbone.get("qkv_bias", base.qkv_bias)), out_indices=tuple(int(i) for i in out_indices),
            apply_layernorm=bool(backbone.get("apply_layernorm", base.apply_layernorm)),
            reassemble_hidden_size=int(config.get("reassemble_hidden_size", base.reassemble_hidden_size)),
            reassemble_factors=tuple(config.get("reassemble_factors", base.reassemble_factors)),
            neck_hidden_sizes=tuple(int(c) for c in config.get("neck_hidden_sizes", base.neck_hidden_sizes)),
            fusion_hidden_size=int(config.get("fusion_hidden_size", base.fusion_hidden_size)),
            head_hidden_size=int(config.get("head_hidden_size", base.head_hidden_size)),
            head_in_index=int(config.get("head_in_index", base.head_in_index)),
            depth_estimation_type=config.get("depth_estimation_type", base.depth_estimation_type),
            max_depth=float(config.get("max_depth") or base.max_depth),
            interpolate_offset=base.interpolate_offset)

    def to_hf_dict(self) -> dict:
        """The transformers ``config.json`` of this architecture (loadable by ``DepthAnythingForDepthEstimation``)."""
        return {
            "architectures": ["DepthAnythingForDepthEstimation"], "model_type": "depth_anything",
            "backbone_config": {
                "model_type": "dinov2", "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "mlp_ratio": _int_if_whole(self.mlp_hidden_size / self.hidden_size),
                "layer_norm_eps": self.layer_norm_eps,
                "patch_size": self.patch_size, "image_size": self.image_size, "num_channels": self.num_channels,
                "qkv_bias": self.qkv_bias, "out_indices": list(self.out_indices),
                "out_features": [f"stage{i}" for i in self.out_indices],
                "apply_layernorm": self.apply_layernorm, "reshape_hidden_states": False, "layerscale_value": 1.0,
                "use_swiglu_ffn": False, "hidden_act": "gelu"},
            "patch_size": self.patch_size, "reassemble_hidden_size": self.reassemble_hidden_size,
            "reassemble_factors": [_int_if_whole(f) for f in self.reassemble_factors],
            "neck_hidden_sizes": list(self.neck_hidden_sizes),
            "fusion_hidden_size": self.fusion_hidden_size, "head_hidden_size": self.head_hidden_size,
            "head_in_index": self.head_in_index, "depth_estimation_type": self.depth_estimation_type,
            "max_depth": _int_if_whole(self.max_depth)}


def _int_if_whole(x: float) -> int | float:
    """transformers' strict configs type `max_depth` and `mlp_ratio` as int: write whole numbers as ints."""
    return int(x) if float(x).is_integer() else float(x)


# The released relative V2 models (Small is Apache-2.0; Base and Large are CC-BY-NC-4.0).
VARIANTS = {
    "small": DepthAnythingConfig(),
    "base": DepthAnythingConfig(hidden_size=768, num_attention_heads=12, mlp_hidden_size=3072,
                                reassemble_hidden_size=768, neck_hidden_sizes=(96, 192, 384, 768),
                                fusion_hidden_size=128),
    "large": DepthAnythingConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                 mlp_hidden_size=4096, out_indices=(5, 12, 18, 24), reassemble_hidden_size=1024,
                                 neck_hidden_sizes=(256, 512, 1024, 1024), fusion_hidden_size=256),
}


# ----------------------------------------------------------------------------------------------------------------
# Resampling with PyTorch's `F.interpolate` numerics, as (out, in) matrices applied per axis (exact, static shapes).

def _cubic_weights(t: float, a: float = -0.75) -> tuple[float, float, float, float]:
    """PyTorch's cubic-convolution weights of the taps at offsets −1, 0, 1, 2 for a fraction t ∈ [0, 1)."""
    def near(x):  # |x| ≤ 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


@functools.lru_cache(maxsize=256)
def bicubic_matrix(in_size: int, out_size: int, scale_factor: float | None = None) -> np.ndarray:
    """(out, in) float64 matrix of ``interpolate(mode="bicubic", align_corners=False, size=out)`` along one axis
    (or of ``interpolate(scale_factor=scale_factor)`` with output ``out_size`` when a factor is given).

    Source coordinate (d + 0.5)·in/out − 0.5 (1/scale_factor in place of in/out; not clamped), taps clamped to
    the border, A = −0.75.
    """
    m = np.zeros((out_size, in_size))
    scale = in_size / out_size if scale_factor is None else 1.0 / scale_factor
    for d in range(out_size):
        src = scale * (d + 0.5) - 0.5
        i0 = math.floor(src)
        for offset, w in zip((-1, 0, 1, 2), _cubic_weights(src - i0)):
            m[d, min(max(i0 + offset, 0), in_size - 1)] += w
    return m


def resize_2d(x: jax.Array, size: tuple[int, int], method: str) -> jax.Array:
    """Resizes (..., H, W, C) to (..., h, w, C) as PyTorch's ``interpolate`` does.

    ``method``: ``"bicubic"`` (align_corners=False), ``"bilinear"`` (align_corners=False) or
    ``"bilinear_aligned"`` (align_corners=True). The identity when the size is unchanged (all three are then
    exact identities in PyTorch too).
    """
    in_h, in_w = x.shape[-3], x.shape[-2]
    if (in_h, in_w) == tuple(size):
        return x
    if method == "bicubic":
        mh, mw = bicubic_matrix(in_h, size[0]), bicubic_matrix(in_w, size[1])
    elif method in ("bilinear", "bilinear_aligned"):
        convention = "align_corners" if method == "bilinear_aligned" else "half_pixel"
        mh, mw = linear_resize_matrix(in_h, size[0], convention), linear_resize_matrix(in_w, size[1], convention)
    else:
        raise ValueError(f"unknown resize method {method!r}")
    hi = jax.lax.Precision.HIGHEST
    y = jnp.einsum("oh,...hwc->...owc", jnp.asarray(mh, x.dtype), x, precision=hi)
    return jnp.einsum("pw,...owc->...opc", jnp.asarray(mw, x.dtype), y, precision=hi)


# ----------------------------------------------------------------------------------------------------------------
# DINOv2 backbone.

class PatchEmbeddings(nnx.Module):
    """``projection``: a patch×patch conv with stride patch, (B, H, W, 3) → (B, H/p·W/p, D) row-major tokens."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        p = config.patch_size
        self.projection = conv2d(config.num_channels, config.hidden_size, kernel=p, strides=p, padding="VALID",
                                 dt=dt, rngs=rngs)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        x = self.projection(pixels)
        return x.reshape(x.shape[0], -1, x.shape[-1])


class Embeddings(nnx.Module):
    """CLS token + patch tokens + position embeddings resized to the input's patch grid.

    ``mask_token`` is the (unused at inference) masked-patch token of DINOv2 pre-training, kept so the
    checkpoint loads strictly.
    """

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        d = config.hidden_size
        init = lambda shape: _normal(rngs, shape, dt.param_dtype, 0.02)
        self.cls_token = nnx.Param(init((1, 1, d)), sharding=(None, None, "norm"))
        self.mask_token = nnx.Param(jnp.zeros((1, d), dt.param_dtype), sharding=(None, "norm"))
        self.position_embeddings = nnx.Param(init((1, config.num_positions + 1, d)), sharding=(None, None, "norm"))
        self.patch_embeddings = PatchEmbeddings(config, dt=dt, rngs=rngs)
        self.patch_size = config.patch_size
        self.grid = config.image_size // config.patch_size
        self.interpolate_offset = config.interpolate_offset

    def position_encoding(self, height: int, width: int) -> jax.Array:
        """(1, 1 + h·w, D) position embeddings for an (height, width) pixel input (transformers'
        ``interpolate_pos_encoding``: bicubic in float32 unless the grid already matches a square input)."""
        pos = self.position_embeddings.get_value()
        h, w = height // self.patch_size, width // self.patch_size
        if h * w == self.grid ** 2 and height == width:
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        grid = patch_pos.reshape(1, self.grid, self.grid, -1).astype(jnp.float32)
        if self.interpolate_offset is None:
            grid = resize_2d(grid, (h, w), "bicubic")
        else:  # the original code's scale_factor form
            off = self.interpolate_offset
            mh = bicubic_matrix(self.grid, h, (h + off) / self.grid)
            mw = bicubic_matrix(self.grid, w, (w + off) / self.grid)
            hi = jax.lax.Precision.HIGHEST
            grid = jnp.einsum("oh,bhwc->bowc", jnp.asarray(mh, grid.dtype), grid, precision=hi)
            grid = jnp.einsum("pw,bowc->bopc", jnp.asarray(mw, grid.dtype), grid, precision=hi)
        grid = grid.astype(pos.dtype)
        return jnp.concatenate([cls_pos, grid.reshape(1, h * w, -1)], axis=1)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        b, height, width, _ = pixels.shape
        tokens = self.patch_embeddings(pixels)
        cls = jnp.broadcast_to(self.cls_token.get_value().astype(tokens.dtype), (b, 1, tokens.shape[-1]))
        tokens = jnp.concatenate([cls, tokens], axis=1)
        return tokens + self.position_encoding(height, width).astype(tokens.dtype)


class SelfAttention(nnx.Module):
    """Multi-head self-attention with ``q_proj``, ``k_proj``, ``v_proj`` and ``o_proj`` (all with bias)."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs, implementation: str | None = None):
        d = config.hidden_size
        self.heads = config.num_attention_heads
        self.implementation = implementation
        self.q_proj = linear(d, d, use_bias=config.qkv_bias, dt=dt, rngs=rngs)
        self.k_proj = linear(d, d, use_bias=config.qkv_bias, dt=dt, rngs=rngs)
        self.v_proj = linear(d, d, use_bias=config.qkv_bias, dt=dt, rngs=rngs)
        self.o_proj = linear(d, d, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, length, d = x.shape
        split = lambda t: t.reshape(n, length, self.heads, d // self.heads)
        out = dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                    implementation=self.implementation)
        return self.o_proj(out.reshape(n, length, d))


class LayerScale(nnx.Module):
    """Per-channel residual-branch scale γ (``lambda1``), initialised to 1."""

    def __init__(self, dim: int, *, dt: DTypes):
        self.lambda1 = nnx.Param(jnp.ones((dim,), dt.param_dtype), sharding=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.lambda1.get_value().astype(x.dtype)


class MLP(nnx.Module):
    """``fc2(gelu(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        self.fc1 = linear(config.hidden_size, config.mlp_hidden_size, dt=dt, rngs=rngs)
        self.fc2 = linear(config.mlp_hidden_size, config.hidden_size, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """A pre-norm ViT block with LayerScale: x + γ₁·attn(LN₁(x)); x + γ₂·mlp(LN₂(x))."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs, implementation: str | None = None):
        eps = config.layer_norm_eps
        self.norm1 = layer_norm(config.hidden_size, eps=eps, dt=dt, rngs=rngs)
        self.attention = SelfAttention(config, dt=dt, rngs=rngs, implementation=implementation)
        self.layer_scale1 = LayerScale(config.hidden_size, dt=dt)
        self.norm2 = layer_norm(config.hidden_size, eps=eps, dt=dt, rngs=rngs)
        self.mlp = MLP(config, dt=dt, rngs=rngs)
        self.layer_scale2 = LayerScale(config.hidden_size, dt=dt)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.layer_scale1(self.attention(self.norm1(x)))
        return x + self.layer_scale2(self.mlp(self.norm2(x)))


class Encoder(nnx.Module):
    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs, implementation: str | None = None):
        self.layer = nnx.List([Block(config, dt=dt, rngs=rngs, implementation=implementation)
                               for _ in range(config.num_hidden_layers)])


class Dinov2Backbone(nnx.Module):
    """DINOv2 returning the (final-LayerNorm'ed) hidden states after the blocks in ``out_indices``."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs, implementation: str | None = None):
        self.embeddings = Embeddings(config, dt=dt, rngs=rngs)
        self.encoder = Encoder(config, dt=dt, rngs=rngs, implementation=implementation)
        self.layernorm = layer_norm(config.hidden_size, eps=config.layer_norm_eps, dt=dt, rngs=rngs)
        self.out_indices = tuple(config.out_indices)
        self.apply_layernorm = config.apply_layernorm

    def __call__(self, pixels: jax.Array) -> list[jax.Array]:
        """(B, H, W, C) normalised pixels → one (B, 1 + h·w, D) array per out index (CLS token first)."""
        x = self.embeddings(pixels)
        states = [x]
        for block in self.encoder.layer:
            x = block(x)
            states.append(x)
        out = [states[i] for i in self.out_indices]
        return [self.layernorm(s) for s in out] if self.apply_layernorm else out


# ----------------------------------------------------------------------------------------------------------------
# DPT neck and head.

class PatchUpsample(nnx.Module):
    """PyTorch ``ConvTranspose2d(c, c, kernel_size=f, stride=f)``: each pixel becomes an f×f block.

    ``kernel`` is (f, f, out, in), i.e. the PyTorch weight (in, out, f, f) moved channels-last by
    :func:`genxd_jax.convert.torch_layout.from_torch_layout`.
    """

    def __init__(self, channels: int, factor: int, *, dt: DTypes, rngs):
        bound = 1.0 / math.sqrt(channels * factor * factor)
        self.factor = factor
        self.kernel = nnx.Param(_uniform(rngs, (factor, factor, channels, channels), dt.param_dtype, bound),
                                sharding=(None, None, "mlp", "embed"))
        self.bias = nnx.Param(_uniform(rngs, (channels,), dt.param_dtype, bound), sharding=("mlp",))
        self.dtype = dt.dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        f = self.factor
        kernel = self.kernel.get_value().astype(self.dtype)
        y = jnp.einsum("bhwi,acoi->bhawco", x.astype(self.dtype), kernel)
        return y.reshape(b, h * f, w * f, -1) + self.bias.get_value().astype(self.dtype)


class ReassembleLayer(nnx.Module):
    """1×1 ``projection`` to ``channels``, then ``resize`` by ``factor`` (absent for factor 1)."""

    def __init__(self, config: DepthAnythingConfig, channels: int, factor: float, *, dt: DTypes, rngs):
        self.projection = conv2d(config.reassemble_hidden_size, channels, kernel=1, dt=dt, rngs=rngs)
        if factor > 1:
            self.resize = PatchUpsample(channels, int(factor), dt=dt, rngs=rngs)
        elif factor < 1:
            self.resize = conv2d(channels, channels, kernel=3, strides=int(round(1 / factor)), dt=dt, rngs=rngs)
        else:
            self.resize = None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.projection(x)
        return x if self.resize is None else self.resize(x)


class ReassembleStage(nnx.Module):
    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        self.layers = nnx.List([ReassembleLayer(config, c, f, dt=dt, rngs=rngs)
                                for c, f in zip(config.neck_hidden_sizes, config.reassemble_factors)])

    def __call__(self, states: Sequence[jax.Array], patch_h: int, patch_w: int) -> list[jax.Array]:
        out = []
        for state, layer in zip(states, self.layers):
            tokens = state[:, 1:]
            out.append(layer(tokens.reshape(tokens.shape[0], patch_h, patch_w, tokens.shape[-1])))
        return out


class ResidualConvUnit(nnx.Module):
    """Pre-activation residual unit: x + conv₂(relu(conv₁(relu(x)))) with 3×3 convs."""

    def __init__(self, channels: int, *, dt: DTypes, rngs):
        self.convolution1 = conv2d(channels, channels, kernel=3, dt=dt, rngs=rngs)
        self.convolution2 = conv2d(channels, channels, kernel=3, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.convolution2(jax.nn.relu(self.convolution1(jax.nn.relu(x))))


class FusionLayer(nnx.Module):
    """(x [+ rcu₁(skip)]) → rcu₂ → bilinear (align_corners=True) to ``size`` or ×2 → 1×1 ``projection``."""

    def __init__(self, channels: int, *, dt: DTypes, rngs):
        self.projection = conv2d(channels, channels, kernel=1, dt=dt, rngs=rngs)
        self.residual_layer1 = ResidualConvUnit(channels, dt=dt, rngs=rngs)
        self.residual_layer2 = ResidualConvUnit(channels, dt=dt, rngs=rngs)

    def __call__(self, x: jax.Array, skip: jax.Array | None = None,
                 size: tuple[int, int] | None = None) -> jax.Array:
        if skip is not None:
            if skip.shape != x.shape:
                skip = resize_2d(skip, x.shape[1:3], "bilinear")
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        size = (2 * x.shape[1], 2 * x.shape[2]) if size is None else size
        return self.projection(resize_2d(x, size, "bilinear_aligned"))


class FusionStage(nnx.Module):
    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        self.layers = nnx.List([FusionLayer(config.fusion_hidden_size, dt=dt, rngs=rngs)
                                for _ in config.neck_hidden_sizes])

    def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
        features = list(features)[::-1]  # coarsest first
        fused, out = None, []
        for i, (feature, layer) in enumerate(zip(features, self.layers)):
            size = tuple(features[i + 1].shape[1:3]) if i + 1 < len(features) else None
            fused = layer(feature, size=size) if fused is None else layer(fused, feature, size=size)
            out.append(fused)
        return out


class Neck(nnx.Module):
    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        self.reassemble_stage = ReassembleStage(config, dt=dt, rngs=rngs)
        self.convs = nnx.List([_conv_no_bias(c, config.fusion_hidden_size, dt=dt, rngs=rngs)
                               for c in config.neck_hidden_sizes])
        self.fusion_stage = FusionStage(config, dt=dt, rngs=rngs)

    def __call__(self, states: Sequence[jax.Array], patch_h: int, patch_w: int) -> list[jax.Array]:
        maps = self.reassemble_stage(states, patch_h, patch_w)
        return self.fusion_stage([conv(m) for conv, m in zip(self.convs, maps)])


class Head(nnx.Module):
    """conv1 (3×3, C → C/2) → bilinear to patch·grid → conv2 (3×3) → ReLU → conv3 (1×1 → 1) → ReLU or sigmoid."""

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes, rngs):
        c = config.fusion_hidden_size
        self.conv1 = conv2d(c, c // 2, kernel=3, dt=dt, rngs=rngs)
        self.conv2 = conv2d(c // 2, config.head_hidden_size, kernel=3, dt=dt, rngs=rngs)
        self.conv3 = conv2d(config.head_hidden_size, 1, kernel=1, dt=dt, rngs=rngs)
        self.head_in_index = config.head_in_index
        self.patch_size = config.patch_size
        self.metric = config.depth_estimation_type == "metric"
        self.max_depth = config.max_depth

    def __call__(self, features: Sequence[jax.Array], patch_h: int, patch_w: int) -> jax.Array:
        x = self.conv1(features[self.head_in_index])
        x = resize_2d(x, (patch_h * self.patch_size, patch_w * self.patch_size), "bilinear_aligned")
        x = self.conv3(jax.nn.relu(self.conv2(x)))
        x = jax.nn.sigmoid(x) if self.metric else jax.nn.relu(x)
        return (x * self.max_depth)[..., 0]


class DepthAnythingForDepthEstimation(nnx.Module):
    """The network: normalised pixels (B, H, W, 3), H and W multiples of 14 → prediction (B, H, W) float.

    Relative models predict disparity up to scale and shift (larger = nearer); metric ones depth in metres.
    Rows/columns beyond the last full patch are ignored, as in PyTorch.
    """

    def __init__(self, config: DepthAnythingConfig, *, dt: DTypes | None = None, rngs=None,
                 attention_impl: str | None = None):
        dt = dt if dt is not None else DTypes()
        rngs = rngs if rngs is not None else InitKeys(0)
        self.config = config
        self.backbone = Dinov2Backbone(config, dt=dt, rngs=rngs, implementation=attention_impl)
        self.neck = Neck(config, dt=dt, rngs=rngs)
        self.head = Head(config, dt=dt, rngs=rngs)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        if pixels.ndim != 4 or pixels.shape[-1] != self.config.num_channels:
            raise ValueError(f"pixels must be (B, H, W, {self.config.num_channels}) channels-last, got "
                             f"{pixels.shape}")
        p = self.config.patch_size
        patch_h, patch_w = pixels.shape[1] // p, pixels.shape[2] // p
        if patch_h == 0 or patch_w == 0:
            raise ValueError(f"input {pixels.shape[1]}×{pixels.shape[2]} is smaller than one {p}×{p} patch")
        states = self.backbone(pixels)
        return self.head(self.neck(states, patch_h, patch_w), patch_h, patch_w)


def _conv_no_bias(cin: int, cout: int, *, dt: DTypes, rngs) -> nnx.Conv:
    """A 3×3, pad-1 convolution without bias (transformers' ``neck.convs``)."""
    bound = 1.0 / math.sqrt(cin * 9)
    return nnx.Conv(cin, cout, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=dt.dtype,
                    param_dtype=dt.param_dtype,
                    kernel_init=lambda key, shape, dtype=jnp.float32: _uniform_key(key, shape, dtype, bound),
                    kernel_metadata={"sharding": (None, None, "embed", "mlp")}, rngs=rngs)


def _normal(rngs, shape, dtype, std):
    key = rngs.params()
    if isinstance(key, np.random.Generator):
        return jnp.asarray(np.clip(key.normal(0.0, std, shape), -2 * std, 2 * std), dtype)
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * std


def _uniform(rngs, shape, dtype, bound):
    return _uniform_key(rngs.params(), shape, dtype, bound)


def _uniform_key(key, shape, dtype, bound):
    if isinstance(key, np.random.Generator):
        return jnp.asarray(key.uniform(-bound, bound, shape), dtype)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def build_depth_anything(config: DepthAnythingConfig, *, seed: int = 0, dtype=jnp.float32,
                         param_dtype=jnp.float32, attention_impl: str | None = None) -> DepthAnythingForDepthEstimation:
    """A randomly initialised network (truncated-normal embeddings, PyTorch-default layers)."""
    dt = DTypes(dtype, param_dtype)
    return materialize(lambda: DepthAnythingForDepthEstimation(config, dt=dt, rngs=InitKeys(seed),
                                                               attention_impl=attention_impl))


def abstract_depth_anything(config: DepthAnythingConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                            attention_impl: str | None = None) -> DepthAnythingForDepthEstimation:
    """The network with ``jax.ShapeDtypeStruct`` parameters (no memory), for loading weights into."""
    dt = DTypes(dtype, param_dtype)
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: DepthAnythingForDepthEstimation(
            config, dt=dt, rngs=InitKeys(0, traced=True), attention_impl=attention_impl))


# ----------------------------------------------------------------------------------------------------------------
# The official pre/post-processing and the curation `DepthModel`.

def network_input_size(height: int, width: int, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """(h, w) the official ``image2tensor`` resizes an (height, width) image to.

    ``Resize(width=input_size, height=input_size, keep_aspect_ratio=True, ensure_multiple_of=14,
    resize_method="lower_bound")``: one scale for both sides, chosen so the shorter side reaches
    ``input_size``; each side is then rounded to a multiple of 14 (NumPy's round-half-to-even) and rounded up
    instead if that would fall below ``input_size``. E.g. 480×640 → 518×686, 256×256 → 518×518.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    scale = max(input_size / height, input_size / width)

    def constrain(x: float) -> int:
        y = int(np.round(x / multiple) * multiple)
        if y < input_size:
            y = int(np.ceil(x / multiple) * multiple)
        return y

    return constrain(scale * height), constrain(scale * width)


def preprocess(rgb: np.ndarray, input_size: int = 518, multiple: int = 14) -> np.ndarray:
    """RGB uint8 (H, W, 3) → the network input (h, w, 3) float32: bicubic resize (OpenCV ``INTER_CUBIC`` on
    [0, 1] values, as the official code), then ``(x − ImageNet mean) / ImageNet std``."""
    rgb = _check_rgb(rgb)
    h, w = network_input_size(rgb.shape[0], rgb.shape[1], input_size, multiple)
    image = cv2.resize(rgb.astype(np.float64) / 255.0, (w, h), interpolation=cv2.INTER_CUBIC)
    image = (image - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return image.astype(np.float32)


def _check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB frame, got dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"empty frame of shape {rgb.shape}")
    return rgb


@functools.partial(jax.jit, static_argnums=(0, 3))
def _predict(graphdef, state, pixels: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    model = nnx.merge(graphdef, state)
    pred = model(pixels)[..., None]
    return resize_2d(pred, out_hw, "bilinear_aligned")[..., 0].astype(jnp.float32)


class DepthAnythingV2:
    """Depth Anything V2 as a curation ``DepthModel``: ``model(rgb uint8 (H, W, 3)) -> (H, W) float32``.

    ``kind`` is ``"disparity"`` for the relative models (relative inverse depth, up to scale and shift) and
    ``"depth"`` (metres) for the metric ones. One XLA program is compiled per distinct frame size (all frames
    of a clip share one); :meth:`predict` runs stacks of frames in batches.
    """

    def __init__(self, model: DepthAnythingForDepthEstimation, *, input_size: int = 518):
        self.model = model
        self.config = model.config
        self.kind: Literal["depth", "disparity"] = model.config.kind
        self.input_size = int(input_size)
        self._graphdef, self._state = nnx.split(model)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.predict(np.asarray(rgb)[None])[0]

    def predict(self, frames: np.ndarray, *, batch_size: int = 1, progress: bool = False) -> np.ndarray:
        """(N, H, W, 3) uint8 frames → (N, H, W) float32 predictions at the input resolution."""
        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f"expected frames (N, H, W, 3), got shape {frames.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        out_hw = (int(frames.shape[1]), int(frames.shape[2]))
        outputs = []
        starts = range(0, len(frames), batch_size)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="depth (Depth Anything V2)", unit="batch")
        for start in starts:
            pixels = np.stack([preprocess(f, self.input_size, self.config.patch_size)
                               for f in frames[start:start + batch_size]])
            outputs.append(np.asarray(_predict(self._graphdef, self._state, jnp.asarray(pixels), out_hw)))
        if not outputs:
            return np.zeros((0, *out_hw), np.float32)
        return np.concatenate(outputs)


def load_depth_anything(path: str | os.PathLike, *, input_size: int = 518, dtype=jnp.float32,
                        compute_dtype=None, attention_impl: str | None = None,
                        interpolate_offset: float | None = None) -> DepthAnythingV2:
    """Loads converted Depth Anything weights as a curation ``DepthModel``.

    ``path``: a ``model.safetensors`` file (Hugging Face ``depth-anything/Depth-Anything-V2-*-hf`` layout, or
    what ``python -m genxd_jax.tools.convert_depth from-pth`` writes) or the directory holding it. The
    architecture comes from a ``config.json`` beside the weights when there is one, otherwise from the weight
    shapes (V2 block indices assumed). Raises :class:`genxd_jax.convert.CheckpointError` naming the file and
    every missing, unexpected or mis-shaped tensor. ``interpolate_offset=0.1`` switches the position-embedding
    resize to the original release's numerics (see :class:`DepthAnythingConfig`); ``compute_dtype=jnp.bfloat16``
    runs activations in bf16 with ``dtype`` parameters.
    """
    from genxd_jax.convert.depth_anything import load_network

    model = load_network(path, dtype=dtype, compute_dtype=compute_dtype, attention_impl=attention_impl,
                         interpolate_offset=interpolate_offset)
    return DepthAnythingV2(model, input_size=input_size)


__all__ = ["DepthAnythingConfig", "VARIANTS", "DepthAnythingForDepthEstimation", "DepthAnythingV2",
           "build_depth_anything", "abstract_depth_anything", "load_depth_anything", "network_input_size",
           "preprocess", "resize_2d", "bicubic_matrix", "IMAGENET_MEAN", "IMAGENET_STD"]
