"""The FID Inception-v3 (the TF `inception-2015-12-05` graph) as a jitted, batched, channels-last NNX module.

This is pytorch-fid's `fid_inception_v3()` architecture, which reproduces the TF graph used by the original
FID (TTUR) and clean-fid. It differs from torchvision's Inception-v3 in:

* average pools in Mixed_5b–5d, 6b–6e and 7b exclude the padding from the count (`count_include_pad=False`);
* Mixed_7c's pool branch is a 3×3 **max** pool (stride 1, padding 1);
* BatchNorm eps is 1e-3 (TF's; the TF graph has no gamma, so `bn.weight` is 1 in converted weights);
* the 1008-class `fc` exists in the weights but is unused.

Output: the 2048-d `pool_3` features (global average of Mixed_7c), float32, one row per image.

`InceptionFID.__call__(images, resize=...)` takes `(..., H, W, 3)` images in [0, 1] of any size, resizes
them to 299×299 and scales them as the chosen reference does (`genxd_jax.evaluation.resize`; default
`pytorch`), and returns features of shape `(..., 2048)`. `features(x)` runs the network (jitted) on
already preprocessed `(N, 299, 299, 3)` input, e.g. `(255x − 128)/128` to compare with NVIDIA's
TorchScript; `pool3(x)` is the same network, traceable, without checks.

Weights: one safetensors file with pytorch-fid's `pt_inception-2015-12-05` state-dict names, see
`genxd_jax.convert.metrics_weights` and `python -m genxd_jax.tools.convert_metrics inception`.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from genxd_jax.evaluation._torch_layers import BatchNorm, Conv2d, avg_pool_exclude_pad, max_pool
from genxd_jax.evaluation.resize import DEFAULT_FID_RESIZE, FID_RESIZE_MODES, resize_for_inception

__all__ = ["FEATURE_DIM", "INPUT_SIZE", "InceptionFID", "abstract_inception", "check_inception_state", "load_inception"]

FEATURE_DIM = 2048
INPUT_SIZE = 299
NUM_CLASSES = 1008
BN_EPS = 1e-3


class BasicConv2d(nnx.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU; torch keys `conv.weight`, `bn.*`."""

    def __init__(self, cin, cout, kernel_size, *, stride=1, padding=0, rngs: nnx.Rngs):
        self.conv = Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, use_bias=False, rngs=rngs)
        self.bn = BatchNorm(cout, eps=BN_EPS)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class InceptionA(nnx.Module):
    """Mixed_5b/c/d (pytorch-fid's FIDInceptionA)."""

    def __init__(self, cin, pool_features, *, rngs):
        self.branch1x1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(avg_pool_exclude_pad(x, 3, 1, 1))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    """Mixed_6a (torchvision's InceptionB)."""

    def __init__(self, cin, *, rngs):
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
    """Mixed_6b–6e (pytorch-fid's FIDInceptionC)."""

    def __init__(self, cin, c7, *, rngs):
        self.branch1x1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(avg_pool_exclude_pad(x, 3, 1, 1))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
    """Mixed_7a (torchvision's InceptionD)."""

    def __init__(self, cin, *, rngs):
        self.branch3x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
    """Mixed_7b (FIDInceptionE_1: average pool without padding) and Mixed_7c (FIDInceptionE_2: max pool)."""

    def __init__(self, cin, *, max_pool_branch: bool, rngs):
        self.max_pool_branch = max_pool_branch
        self.branch1x1 = BasicConv2d(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
        pooled = max_pool(x, 3, 1, 1) if self.max_pool_branch else avg_pool_exclude_pad(x, 3, 1, 1)
        return jnp.concatenate([b1, b3, bd, self.branch_pool(pooled)], axis=-1)


class InceptionFID(nnx.Module):
    """FID Inception-v3 to pool3; parameter paths are pytorch-fid's state-dict keys (without `fc`)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, max_pool_branch=False, rngs=rngs)
        self.Mixed_7c = InceptionE(2048, max_pool_branch=True, rngs=rngs)

    def features(self, x) -> jax.Array:
        """Jitted pool3 features `(N, 2048)` of *preprocessed* input `(N, H, W, 3)` (no resizing or scaling).

        H, W >= 75 (299 for FID); use `__call__` for images in [0, 1].
        """
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < 75:
            raise ValueError(f"InceptionFID.features: expected (N, H, W, 3) input with H, W >= 75, got {x.shape}")
        return _pool3_jit(self, x)

    def pool3(self, x: jax.Array) -> jax.Array:
        """The network itself (traceable, no checks): `(N, H, W, 3)` preprocessed input -> `(N, 2048)`."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool(x, 3, 2)
        x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, images, resize: str = DEFAULT_FID_RESIZE) -> jax.Array:
        """pool3 features of `(..., H, W, 3)` images in [0, 1] -> `(..., 2048)` float32.

        `resize` is the reference convention (`pytorch`, `tf1` or `clean`, see `genxd_jax.evaluation.resize`).
        """
        x = jnp.asarray(images)
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ValueError(f"InceptionFID: images must be channels-last RGB (..., H, W, 3), got shape {x.shape}")
        if resize not in FID_RESIZE_MODES:
            raise ValueError(f"InceptionFID: unknown resize mode {resize!r}; expected one of {FID_RESIZE_MODES}")
        lead = x.shape[:-3]
        if int(np.prod(lead, dtype=np.int64)) == 0:
            return jnp.zeros(lead + (FEATURE_DIM,), jnp.float32)
        x = x.reshape((-1,) + x.shape[-3:]).astype(jnp.float32)
        return _features_jit(self, x, resize).reshape(lead + (FEATURE_DIM,))

    def features_of(self, images, *, batch_size: int = 50, resize: str = DEFAULT_FID_RESIZE,
                    progress: bool = True, desc: str = "Inception features") -> np.ndarray:
        """Features `(N, 2048)` float64 of many images, in batches of `batch_size`, with a progress bar.

        Args:
            images: an array `(N, H, W, 3)` in [0, 1], or an iterable of such arrays (batches of any
                size, e.g. frames read from disk one clip at a time).
            batch_size: images per network call; a short batch is padded (with copies of its last image,
                whose features are dropped) to keep one compiled shape.
            resize: the FID resize convention.
            progress: show a tqdm bar with ETA.
        """
        if batch_size < 1:
            raise ValueError(f"features_of: batch_size must be positive, got {batch_size}")
        chunks = [images] if hasattr(images, "shape") else images
        total = int(images.shape[0]) if hasattr(images, "shape") else None
        width = min(batch_size, total) if total else batch_size
        out = []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.ndim != 4 or chunk.shape[-1] != 3:
                    raise ValueError(f"features_of: expected (N, H, W, 3) batches, got shape {chunk.shape}")
                for start in range(0, chunk.shape[0], width):
                    batch = chunk[start:start + width]
                    n = batch.shape[0]
                    if n < width:
                        batch = np.concatenate([batch, np.repeat(batch[-1:], width - n, axis=0)])
                    out.append(np.asarray(self(batch, resize=resize))[:n].astype(np.float64))
                    bar.update(n)
        if not out:
            raise ValueError("features_of: no images")
        return np.concatenate(out, axis=0)


@nnx.jit(static_argnames=("resize",))
def _features_jit(model: InceptionFID, x, resize):
    return model.pool3(resize_for_inception(x, resize, INPUT_SIZE))


@nnx.jit
def _pool3_jit(model: InceptionFID, x):
    return model.pool3(x)


@functools.lru_cache(maxsize=1)
def _abstract_split():
    """(graphdef, abstract state) of the network, built once (building it takes ~1 s)."""
    return nnx.split(nnx.eval_shape(lambda: InceptionFID(rngs=nnx.Rngs(0))))


def abstract_inception() -> InceptionFID:
    """A fresh `InceptionFID` with shape-only (abstract) parameters, e.g. to load weights into."""
    return nnx.merge(*_abstract_split())


@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    from genxd_jax.convert.torch_layout import to_torch_layout, torch_key

    return {torch_key(tuple(p)): tuple(to_torch_layout(tuple(p), np.empty(v.get_value().shape, np.uint8)).shape)
            for p, v in nnx.to_flat_state(nnx.state(abstract_inception(), nnx.Param))}


OPTIONAL = {"fc.weight": (NUM_CLASSES, FEATURE_DIM), "fc.bias": (NUM_CLASSES,)}


def check_inception_state(tensors: dict[str, np.ndarray], source: str = "weights") -> None:
    """Raises one `CheckpointError` listing every missing, unexpected and mis-shaped key of an Inception state dict.

    Required: every pool3 parameter with pytorch-fid's names. Accepted and ignored: `fc.weight`/`fc.bias`
    (the unused 1008-class head) and `*.num_batches_tracked`.
    """
    from genxd_jax.convert.safetensors_io import CheckpointError
    from genxd_jax.convert.torch_layout import _format_problems

    expected = _expected_shapes() | OPTIONAL
    keys = {k for k in tensors if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - keys - set(OPTIONAL))
    unexpected = sorted(keys - set(expected))
    mismatched = [f"{k}: {source} has {tuple(tensors[k].shape)}, model needs {expected[k]}"
                  for k in sorted(keys & set(expected)) if tuple(tensors[k].shape) != expected[k]]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{source} is not a pytorch-fid FID Inception state dict:\n"
                              + _format_problems(missing, unexpected, mismatched))


def load_inception(path: str | os.PathLike) -> InceptionFID:
    """FID Inception with the weights of a safetensors file (pytorch-fid names, strict checks).

    Pickles are refused; convert `pt_inception-2015-12-05-*.pth` or NVIDIA's TorchScript once with
    `python -m genxd_jax.tools.convert_metrics inception SRC OUT.safetensors`.
    """
    from genxd_jax.convert.metrics_weights import read_metric_weights
    from genxd_jax.convert.torch_layout import load_torch_state

    tensors = read_metric_weights(path, "Inception")
    check_inception_state(tensors, str(path))
    tensors = {k: v for k, v in tensors.items() if k not in OPTIONAL and not k.endswith("num_batches_tracked")}
    return load_torch_state(abstract_inception(), tensors, source=str(path))
