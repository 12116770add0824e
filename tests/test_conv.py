"""The CPU convolution dispatch: im2col equals XLA's convolution, and is taken only where it should be."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genxd_jax.models import conv
from genxd_jax.models.layers import DTypes, conv2d, frame_conv

NHWC = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, padding, strides=(1, 1)):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC,
                                        precision=jax.lax.Precision.HIGHEST)


def _primitives(fn, *args):
    return {e.primitive.name for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


@pytest.mark.parametrize("kernel,padding,hw", [
    ((3, 3), ((1, 1), (1, 1)), (4, 4)),
    ((3, 3), ((1, 1), (1, 1)), (8, 5)),
    ((3, 3), ((0, 0), (0, 0)), (6, 6)),
    ((3, 3), ((2, 0), (0, 1)), (5, 7)),
    ((5, 3), ((2, 2), (1, 1)), (6, 4)),
    ((2, 2), ((0, 1), (1, 0)), (3, 3)),
])
def test_im2col_equals_xla_convolution(kernel, padding, hw):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, *hw, 7)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((*kernel, 7, 5)), jnp.float32)
    got = conv.im2col_conv(x, w, padding, precision=jax.lax.Precision.HIGHEST)
    want = _lax(x, w, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_im2col_gradients_equal_xla_convolution():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 4, 4, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 6, 4)), jnp.float32)
    pad = ((1, 1), (1, 1))
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    g_im2col = jax.grad(loss(lambda x, w: conv.im2col_conv(x, w, pad, precision="highest")), (0, 1))(x, w)
    g_xla = jax.grad(loss(lambda x, w: _lax(x, w, pad)), (0, 1))(x, w)
    for a, b in zip(g_im2col, g_xla):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dispatch_takes_im2col_only_for_small_wide_stride_one_maps_on_cpu():
    assert jax.default_backend() == "cpu"
    c = conv.IM2COL_MIN_CHANNELS
    w = jnp.zeros((3, 3, c, 4))
    pad = ((1, 1), (1, 1))
    call = lambda x, s=(1, 1): conv.conv_general_dilated(x, w, s, pad, dimension_numbers=NHWC)  # noqa: E731
    small, large = jnp.zeros((2, 8, 8, c)), jnp.zeros((2, 9, 8, c))  # 64 and 72 output pixels
    assert "conv_general_dilated" not in _primitives(call, small)
    assert "conv_general_dilated" in _primitives(call, large)
    assert "conv_general_dilated" in _primitives(lambda x: call(x, (2, 2)), small)            # strided
    narrow = jnp.zeros((3, 3, c - 1, 4))                                                       # too few channels
    assert "conv_general_dilated" in _primitives(
        lambda x: conv.conv_general_dilated(x, narrow, (1, 1), pad, dimension_numbers=NHWC), small[..., 1:])
    assert "conv_general_dilated" in _primitives(                                              # 1×1 kernel
        lambda x: conv.conv_general_dilated(x, jnp.zeros((1, 1, c, 4)), (1, 1), ((0, 0), (0, 0)),
                                            dimension_numbers=NHWC), small)
    assert "conv_general_dilated" in _primitives(                                              # NCHW
        lambda x: conv.conv_general_dilated(x, jnp.zeros((4, c, 3, 3)), (1, 1), pad,
                                            dimension_numbers=("NCHW", "OIHW", "NCHW")), jnp.zeros((2, c, 8, 8)))


def test_nnx_convs_use_the_dispatch_and_keep_their_numbers(monkeypatch):
    """conv2d (im2col at 4×4, wide) and frame_conv (XLA, 3-D) equal lax on their own parameters."""
    monkeypatch.setattr(conv, "IM2COL_MIN_CHANNELS", 6)  # read at trace time: a narrow layer takes the matmul path
    dt = DTypes(jnp.float32, jnp.float32)
    with nnx.use_eager_sharding(False):
        layer = conv2d(6, 5, dt=dt, rngs=nnx.Rngs(0))
        temporal = frame_conv(6, 5, dt=dt, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 4, 4, 6)), jnp.float32)
    assert "conv_general_dilated" not in _primitives(lambda x: layer(x), x)
    want = _lax(x, layer.kernel[...], ((1, 1), (1, 1))) + layer.bias[...]
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(conv, "IM2COL_MAX_PIXELS", 0)  # 0 turns the matmul path off
    assert "conv_general_dilated" in _primitives(lambda x: layer(x), x)

    v = jnp.zeros((1, 3, 2, 2, 6))
    assert "conv_general_dilated" in _primitives(lambda v: temporal(v), v)
