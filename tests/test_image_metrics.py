"""Tests for genxd_jax.evaluation.image_metrics against scikit-image and tf.image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genxd_jax.evaluation import evaluate_views, psnr, ssim

try:
    import skimage.metrics as skm
except ImportError:  # pragma: no cover - scikit-image is in the test extra
    skm = None

needs_skimage = pytest.mark.skipif(skm is None, reason="scikit-image (test extra) is the reference")


def noisy_pair(shape, seed=0, noise=0.1):
    """Smooth-ish images in [0, 1] and a noisy, clipped copy (float32)."""
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    # A little spatial structure so that SSIM is not dominated by white noise.
    a = (a + np.roll(a, 1, axis=-2) + np.roll(a, 1, axis=-3)) / 3.0
    b = np.clip(a + noise * rng.standard_normal(shape), 0.0, 1.0)
    return a.astype(np.float32), b.astype(np.float32)


def sk_ssim(a, b, data_range=1.0, sigma=1.5, k1=0.01, k2=0.03):
    return skm.structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        data_range=data_range,
        K1=k1,
        K2=k2,
    )


@needs_skimage
@pytest.mark.parametrize("shape", [(2, 3, 32, 40, 3), (4, 24, 17, 1), (11, 11, 3)])
def test_matches_skimage(shape):
    a, b = noisy_pair(shape, seed=len(shape))
    got_psnr = np.asarray(psnr(a, b))
    got_ssim = np.asarray(ssim(a, b))
    assert got_psnr.shape == got_ssim.shape == shape[:-3]
    flat_a = a.reshape((-1,) + shape[-3:])
    flat_b = b.reshape((-1,) + shape[-3:])
    ref_psnr = [
        skm.peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(flat_a, flat_b, strict=True)
    ]
    ref_ssim = [sk_ssim(x, y) for x, y in zip(flat_a, flat_b, strict=True)]
    np.testing.assert_allclose(got_psnr.reshape(-1), ref_psnr, rtol=1e-5)
    np.testing.assert_allclose(got_ssim.reshape(-1), ref_ssim, atol=2e-5)


@needs_skimage
def test_matches_skimage_uint8_and_other_constants():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 30, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    got = np.asarray(ssim(a, b, max_val=255.0, filter_size=9, filter_sigma=1.0, k1=0.02, k2=0.05))
    # skimage's Gaussian window is 2 * round(3.5 sigma) + 1 = 9 taps for sigma = 1.
    ref = [sk_ssim(x, y, data_range=255, sigma=1.0, k1=0.02, k2=0.05) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, ref, atol=2e-5)
    ref_psnr = [skm.peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(np.asarray(psnr(a, b, max_val=255.0)), ref_psnr, rtol=1e-5)


def test_matches_tf_image():
    tf = pytest.importorskip("tensorflow")
    a, b = noisy_pair((3, 20, 26, 3), seed=7, noise=0.2)
    np.testing.assert_allclose(np.asarray(psnr(a, b)), tf.image.psnr(a, b, 1.0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ssim(a, b)), tf.image.ssim(a, b, 1.0).numpy(), atol=2e-5)
    kw = dict(filter_size=7, filter_sigma=1.0, k1=0.02, k2=0.05)
    np.testing.assert_allclose(
        np.asarray(ssim(a, b, 2.0, **kw)), tf.image.ssim(a, b, 2.0, **kw).numpy(), atol=2e-5
    )


def test_identical_images():
    a, _ = noisy_pair((2, 16, 16, 3))
    p = np.asarray(psnr(a, a))
    assert p.shape == (2,) and np.all(np.isposinf(p))
    np.testing.assert_allclose(np.asarray(ssim(a, a)), 1.0, atol=1e-6)


def test_symmetry_and_bounds():
    a, b = noisy_pair((3, 20, 20, 3), seed=1, noise=0.3)
    np.testing.assert_allclose(np.asarray(psnr(a, b)), np.asarray(psnr(b, a)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ssim(a, b)), np.asarray(ssim(b, a)), atol=1e-6)
    s = np.asarray(ssim(a, b))
    assert np.all(s < 1.0) and np.all(s > -1.0)
    # More noise, lower scores.
    _, c = noisy_pair((3, 20, 20, 3), seed=1, noise=0.05)
    assert np.all(np.asarray(psnr(a, c)) > np.asarray(psnr(a, b)))
    assert np.all(np.asarray(ssim(a, c)) > s)


def test_constant_offset_psnr():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.0, 0.9, (2, 8, 9, 3)).astype(np.float32)
    b = a + np.float32(0.1)  # MSE = 0.01
    np.testing.assert_allclose(np.asarray(psnr(a, b)), 20.0, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(psnr(a, b, max_val=2.0)), 20.0 + 20.0 * np.log10(2.0), rtol=1e-4)
    # uint8 inputs are not subtracted in uint8 (no wrap-around): |0 - 255| = max_val, 0 dB.
    zeros = np.zeros((4, 4, 1), np.uint8)
    np.testing.assert_allclose(float(psnr(zeros, zeros + 255, max_val=255.0)), 0.0, atol=1e-6)


def test_scalar_and_jit_traceable():
    a, b = noisy_pair((12, 12, 3))
    assert psnr(a, b).shape == () and ssim(a, b).shape == ()
    both = jax.jit(lambda x, y: (psnr(x, y), ssim(x, y)))(a, b)
    np.testing.assert_allclose(np.asarray(both[0]), np.asarray(psnr(a, b)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(both[1]), np.asarray(ssim(a, b)), rtol=1e-6)


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_shape_errors(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 1)))
    with pytest.raises(ValueError, match="channels-last"):
        fn(np.zeros((16, 16)), np.zeros((16, 16)))


def test_ssim_image_smaller_than_window():
    with pytest.raises(ValueError, match="smaller than filter_size=11"):
        ssim(np.zeros((10, 32, 3)), np.zeros((10, 32, 3)))
    assert ssim(np.zeros((5, 5, 1)), np.zeros((5, 5, 1)), filter_size=5).shape == ()


def test_evaluate_views_mask_and_range():
    gen, tgt = noisy_pair((2, 4, 16, 16, 3), seed=5)
    mask = np.array([[False, True, True, True], [False, True, False, True]])
    out = evaluate_views(gen, tgt, mask)
    assert set(out) == {"psnr", "ssim", "num_frames"}
    assert float(out["num_frames"]) == 5
    np.testing.assert_allclose(float(out["psnr"]), np.asarray(psnr(gen, tgt))[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(out["ssim"]), np.asarray(ssim(gen, tgt))[mask].mean(), rtol=1e-5)
    # A per-frame mask (F,) broadcasts over the batch; None means every frame.
    out_f = evaluate_views(gen, tgt, np.array([0, 1, 1, 0]))
    np.testing.assert_allclose(float(out_f["psnr"]), np.asarray(psnr(gen, tgt))[:, 1:3].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(evaluate_views(gen, tgt)["ssim"]), np.asarray(ssim(gen, tgt)).mean())
    # Images in [-1, 1] are scored as the same images mapped to [0, 1].
    out_pm = evaluate_views(gen * 2 - 1, tgt * 2 - 1, mask, value_range=(-1.0, 1.0))
    np.testing.assert_allclose(float(out_pm["psnr"]), float(out["psnr"]), rtol=1e-4)
    np.testing.assert_allclose(float(out_pm["ssim"]), float(out["ssim"]), rtol=1e-4)


def test_evaluate_views_exact_frames_and_jit():
    gen, tgt = noisy_pair((3, 16, 16, 3), seed=2)
    gen[0] = tgt[0]  # an exactly reproduced (e.g. conditioning) frame
    capped = evaluate_views(gen, tgt)
    assert np.isfinite(float(capped["psnr"]))
    assert np.isposinf(float(evaluate_views(gen, tgt, max_psnr=None)["psnr"]))
    # Masked out, the exact frame does not affect the mean (and does not turn it into NaN).
    mask = np.array([False, True, True])
    per_frame = np.asarray(psnr(gen, tgt))
    out = jax.jit(lambda g, t, m: evaluate_views(g, t, m, max_psnr=None))(gen, tgt, mask)
    np.testing.assert_allclose(float(out["psnr"]), per_frame[1:].mean(), rtol=1e-5)
    assert np.isnan(float(evaluate_views(gen, tgt, np.zeros(3, bool))["psnr"]))


def test_evaluate_views_errors():
    gen, tgt = noisy_pair((2, 4, 12, 12, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        evaluate_views(gen, tgt, np.ones((3,), bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        evaluate_views(gen, tgt, np.ones((2, 4, 1), bool))
    with pytest.raises(ValueError, match="value_range"):
        evaluate_views(gen, tgt, value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="same shape"):
        evaluate_views(gen, tgt[:, :3])


def test_float64_and_bfloat16_inputs_are_scored_in_float32():
    a, b = noisy_pair((16, 16, 3))
    ref = float(ssim(a, b))
    assert ssim(a.astype(np.float64), b.astype(np.float64)).dtype == jnp.float32
    np.testing.assert_allclose(float(ssim(a.astype(np.float64), b.astype(np.float64))), ref, rtol=1e-6)
    low = float(ssim(jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16)))
    np.testing.assert_allclose(low, ref, atol=2e-2)
