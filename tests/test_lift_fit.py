"""Tests of 3D Gaussian fitting (`genxd_jax.lift.fit`, `optim`, `losses`, `densify`, `init_points`).

Small on purpose (CPU CI): 16–32 px images, ≤ 1024 slots. All fits share one compiled training step (same
image size, capacity and loss/render settings; learning rates are injected, see `optim.py`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

from genxd_jax.evaluation import psnr
from genxd_jax.evaluation import ssim as eval_ssim
from genxd_jax.geometry import look_at
from genxd_jax.lift import Gaussians
from genxd_jax.lift import densify as dl
from genxd_jax.lift.fit import (
    FitDivergedError,
    ViewSampler,
    fit_scene,
    grown_tile_capacity,
    initial_tile_capacity,
    scene_extent,
    sh_band_mask,
)
from genxd_jax.lift.fit_config import get_config
from genxd_jax.lift.init_points import InitPoints, initial_points, project_world, random_frustum_points
from genxd_jax.lift.losses import photometric_loss, ssim_map
from genxd_jax.lift.optim import (
    expon_lr,
    gaussian_params,
    get_learning_rates,
    learning_rates,
    make_optimizer,
    set_learning_rates,
)
from genxd_jax.lift.render import render, render_dense

SIZE = 32
CAPACITY = 1024
K_NORM = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])


def _fit_config(**overrides):
    cfg = get_config("tiny")
    cfg.capacity = CAPACITY
    for key, value in overrides.items():
        obj = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            obj = obj[p]
        obj[leaf] = value
    return cfg


def _smooth_image(h=SIZE, w=SIZE):
    j, i = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    x, y = i / w, j / h
    return np.stack(
        [
            0.5 + 0.4 * np.sin(2 * np.pi * x) * np.cos(np.pi * y),
            0.2 + 0.6 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.05),
            0.5 + 0.4 * np.cos(2 * np.pi * (x + y)),
        ],
        -1,
    ).astype(np.float32)


# --------------------------------------------------------------------------------------- learning rates
def test_expon_lr_and_reference_rates():
    assert float(expon_lr(0, 1.6e-4, 1.6e-6, 1000)) == pytest.approx(1.6e-4, rel=1e-6)
    assert float(expon_lr(1000, 1.6e-4, 1.6e-6, 1000)) == pytest.approx(1.6e-6, rel=1e-5)
    assert float(expon_lr(5000, 1.6e-4, 1.6e-6, 1000)) == pytest.approx(1.6e-6, rel=1e-5)  # clamped
    assert float(expon_lr(500, 1.6e-4, 1.6e-6, 1000)) == pytest.approx(1.6e-5, rel=1e-5)  # geometric mean
    cfg = get_config("single_view")
    extent = 2.5
    lr0 = learning_rates(cfg.optim, extent, 2000, step=0)
    assert lr0 == pytest.approx(
        {
            "means": 1.6e-4 * extent,
            "sh_dc": 2.5e-3,
            "sh_rest": 2.5e-3 / 20,
            "opacity_logits": 0.05,
            "log_scales": 5e-3,
            "quats": 1e-3,
        }
    )
    assert learning_rates(cfg.optim, extent, 2000, step=2000)["means"] == pytest.approx(1.6e-6 * extent)
    assert learning_rates(cfg.optim, extent, 2000, step=1000)["means"] == pytest.approx(1.6e-5 * extent)
    assert cfg.optim.adam_eps == 1e-15
    with pytest.raises(ValueError, match="extent"):
        learning_rates(cfg.optim, 0.0, 10)


def test_first_adam_step_has_the_group_learning_rate():
    """Adam's first update is −lr·sign(g) (ε = 1e-15), so each group must move by exactly its rate."""
    cfg = get_config("single_view")
    rng = np.random.default_rng(0)
    g = Gaussians.create(rng.normal(size=(8, 3)), capacity=8)
    params = gaussian_params(g)
    opt = make_optimizer(cfg.optim)
    state = set_learning_rates(opt.init(params), learning_rates(cfg.optim, 3.0, 100, step=0))
    assert get_learning_rates(state) == pytest.approx(learning_rates(cfg.optim, 3.0, 100, step=0))
    grads = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
    updates, _ = opt.update(grads, state, params)
    rates = learning_rates(cfg.optim, 3.0, 100, step=0)
    for name, upd in updates.items():
        np.testing.assert_allclose(np.asarray(upd), -rates[name] * np.sign(np.asarray(grads[name])), rtol=1e-5)


def test_sh_degree_schedule_in_config():
    cfg = get_config("few_view")
    assert cfg.iterations == 10_000 and get_config("single_view").iterations == 2000
    assert cfg.sh_increase_every == 1000 and cfg.max_sh_degree == 3
    np.testing.assert_array_equal(np.asarray(sh_band_mask(0))[:, 0], np.zeros(15))
    np.testing.assert_array_equal(np.asarray(sh_band_mask(1))[:, 0], [1] * 3 + [0] * 12)
    np.testing.assert_array_equal(np.asarray(sh_band_mask(2))[:, 0], [1] * 8 + [0] * 7)
    np.testing.assert_array_equal(np.asarray(sh_band_mask(3))[:, 0], np.ones(15))
    assert cfg.loss.lambda_dssim == 0.2
    with pytest.raises(ValueError, match="variant"):
        get_config("huge")


# --------------------------------------------------------------------------------------------- losses
def test_training_ssim_equals_evaluation_ssim_in_the_interior():
    rng = np.random.default_rng(1)
    a = gaussian_filter(rng.uniform(size=(40, 40, 3)), (1.5, 1.5, 0)).astype(np.float32)
    b = np.clip(a + 0.05 * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    interior = np.asarray(ssim_map(a, b))[5:-5, 5:-5]
    assert np.mean(interior) == pytest.approx(float(eval_ssim(a, b)), abs=1e-5)
    assert float(jnp.mean(ssim_map(a, a))) == pytest.approx(1.0, abs=1e-6)


def test_photometric_loss_terms_and_lpips_hook():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(24, 24, 3)).astype(np.float32)
    b = rng.uniform(size=(24, 24, 3)).astype(np.float32)
    loss, terms = photometric_loss(a, b)
    assert float(terms["l1"]) == pytest.approx(float(np.mean(np.abs(a - b))), rel=1e-5)
    assert float(loss) == pytest.approx(0.8 * float(terms["l1"]) + 0.2 * (1 - float(terms["ssim"])), rel=1e-6)
    assert float(photometric_loss(a, a)[0]) == pytest.approx(0.0, abs=1e-6)
    fake_lpips = lambda x, y: jnp.mean((x - y) ** 2)  # noqa: E731
    loss2, terms2 = photometric_loss(a, b, lpips_fn=fake_lpips, lpips_weight=0.1)
    assert float(loss2) == pytest.approx(float(loss) + 0.1 * float(np.mean((a - b) ** 2)), rel=1e-5)
    assert float(terms2["lpips"]) > 0
    with pytest.raises(ValueError, match="lpips_fn"):
        photometric_loss(a, b, lpips_weight=0.1)


# ------------------------------------------------------------------------------------------- densify
def _slots(capacity=8, active=4):
    rng = np.random.default_rng(3)
    g = Gaussians.create(rng.normal(size=(active, 3)), rng.uniform(size=(active, 3)), scales=0.01, capacity=capacity)
    q = rng.normal(size=(capacity, 4)).astype(np.float32)
    return g.replace(
        quats=jnp.asarray(q),
        sh_rest=jnp.asarray(rng.normal(size=(capacity, 15, 3)).astype(np.float32)),
        # garbage in the inactive slots, to check that it is left alone
        means=g.means.at[active:].set(jnp.asarray(rng.normal(size=(capacity - active, 3)), jnp.float32)),
    )


def _moments(g):
    opt = make_optimizer(get_config("tiny").optim)
    params = gaussian_params(g)
    state = opt.init(params)
    ones = jax.tree_util.tree_map(jnp.ones_like, params)
    _, state = opt.update(ones, state, params)  # non-zero moments everywhere
    return state


def _mu(state, field):
    found = []

    def visit(path, leaf):
        names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        if field in names and "mu" in names and getattr(leaf, "ndim", 0) >= 1:
            found.append(np.asarray(leaf))
        return leaf

    jax.tree_util.tree_map_with_path(visit, state)
    assert len(found) == 1
    return found[0]


def test_statistic_is_the_ndc_scaled_pixel_gradient():
    stats = dl.DensifyStats.zeros(3)
    grad = jnp.asarray([[0.3, -0.4], [1.0, 2.0], [5.0, 5.0]], jnp.float32)
    radii = jnp.asarray([2, 1, 0], jnp.int32)
    w, h = 40, 20
    stats = dl.accumulate_stats(stats, grad, radii, w, h)
    stats = dl.accumulate_stats(stats, 2 * grad, radii, w, h)
    expect0 = math.hypot(0.3 * 20, 0.4 * 10)  # 0.5·W, 0.5·H
    np.testing.assert_allclose(np.asarray(stats.denom), [2, 2, 0])
    np.testing.assert_allclose(np.asarray(stats.mean_grad())[0], 1.5 * expect0, rtol=1e-6)
    assert float(stats.mean_grad()[2]) == 0.0  # never visible
    np.testing.assert_allclose(np.asarray(stats.max_radii), [2, 1, 0])


def test_render_offset_gradient_is_in_pixels():
    """∂L/∂offset equals ∂L/∂(pixel position): the autodiff gradient w.r.t. the 3D mean along camera x
    is ∂L/∂u · fx/z (plus a tiny covariance term), fx = 16 px, z = 2."""
    g = Gaussians.create(np.array([[0.05, -0.03, 2.0]]), np.array([[0.9, 0.4, 0.1]]), scales=0.1, opacity=0.8)
    c2w = jnp.eye(4)
    k = jnp.asarray(K_NORM, jnp.float32)
    target = jnp.asarray(_smooth_image(16, 16))

    def loss(means, off):
        return jnp.sum(render_dense(g.replace(means=means), c2w, k, 16, 16, means2d_offset=off).rgb * target)

    g_means, g_off = jax.grad(loss, argnums=(0, 1))(g.means, jnp.zeros((1, 2)))
    g_off = np.asarray(g_off)[0]
    assert abs(g_off[0]) > 1e-2 and abs(g_off[1]) > 1e-2
    np.testing.assert_allclose(np.asarray(g_means)[0, 0] / 8.0, g_off[0], rtol=0.03)
    np.testing.assert_allclose(np.asarray(g_means)[0, 1] / 8.0, g_off[1], rtol=0.03)
    # and the densification statistic of that gradient is its NDC-scaled norm
    stat = dl.accumulate_stats(dl.DensifyStats.zeros(1), jnp.asarray(g_off[None]), jnp.asarray([3]), 16, 16)
    assert float(stat.mean_grad()[0]) == pytest.approx(8.0 * float(np.linalg.norm(g_off)), rel=1e-5)


def test_clone_split_prune_as_masked_slot_operations():
    g = _slots()
    scales = np.full((8, 3), 0.01, np.float32)
    scales[1] = [0.2, 0.05, 0.1]  # big: split
    logits = np.asarray(g.opacity_logits).copy()
    logits[2] = -8.0  # opacity 3e-4 < 0.005: prune
    g = g.replace(log_scales=jnp.log(jnp.asarray(scales)), opacity_logits=jnp.asarray(logits))
    stats = dl.DensifyStats(
        grad_accum=jnp.asarray([3e-4, 5e-4, 0, 1e-4, 0, 0, 0, 0], jnp.float32),
        denom=jnp.asarray([1, 1, 1, 1, 0, 0, 0, 0], jnp.float32),
        max_radii=jnp.zeros(8, jnp.float32),
    )
    opt_state = _moments(g)
    g2, stats2, opt2, info = dl.densify_and_prune(g, stats, opt_state, jax.random.PRNGKey(0), extent=2.0)
    info = {k: int(v) for k, v in info.items()}
    assert info == {"cloned": 1, "split": 1, "dropped": 0, "pruned": 1, "active": 5}
    act = np.asarray(g2.active)
    np.testing.assert_array_equal(act, [1, 1, 0, 1, 1, 1, 0, 0])
    # the clone (request with the larger statistic first: slot 1 -> free slot 4, slot 0 -> slot 5)
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(np.asarray(getattr(g2, f))[5], np.asarray(getattr(g, f))[0])
        np.testing.assert_array_equal(np.asarray(getattr(g2, f))[0], np.asarray(getattr(g, f))[0])
        np.testing.assert_array_equal(np.asarray(getattr(g2, f))[3], np.asarray(getattr(g, f))[3])
    # the split: both children shrink by 1.6, keep rotation, colour, opacity
    for slot in (1, 4):
        np.testing.assert_allclose(np.asarray(jnp.exp(g2.log_scales[slot])), scales[1] / 1.6, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(g2.sh_rest[slot]), np.asarray(g.sh_rest[1]))
        assert float(g2.opacity_logits[slot]) == float(g.opacity_logits[1])
    assert not np.allclose(np.asarray(g2.means[1]), np.asarray(g2.means[4]))
    # untouched inactive slots are bit-identical
    for f in ("means", "quats", "log_scales", "sh_rest"):
        np.testing.assert_array_equal(np.asarray(getattr(g2, f))[6:], np.asarray(getattr(g, f))[6:])
    # Adam moments: clone parent keeps them; new slots, split children and pruned slots are zeroed
    mu0, mu2 = _mu(opt_state, "means"), _mu(opt2, "means")
    np.testing.assert_array_equal(mu2[[0, 3]], mu0[[0, 3]])
    assert np.all(mu2[[1, 2, 4, 5]] == 0)
    assert float(jnp.sum(stats2.grad_accum) + jnp.sum(stats2.denom)) == 0.0  # statistics reset


def test_split_conserves_the_parent_position_distribution():
    n = 2000
    rng = np.random.default_rng(4)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    s = np.array([0.3, 0.1, 0.05], np.float32)
    g = Gaussians.create(np.zeros((n, 3)), scales=s[None].repeat(n, 0), capacity=2 * n)
    g = g.replace(quats=jnp.asarray(np.tile(q, (2 * n, 1)), jnp.float32))
    stats = dl.DensifyStats(grad_accum=jnp.full((2 * n,), 1.0), denom=jnp.ones((2 * n,)), max_radii=jnp.zeros((2 * n,)))
    g2, _, _, info = dl.densify_and_prune(g, stats, None, jax.random.PRNGKey(1), extent=1.0)
    assert int(info["split"]) == n and int(info["active"]) == 2 * n
    x = np.asarray(g2.means)
    rot = np.asarray(g.rotation_matrices()[0])
    cov = rot @ np.diag(s**2) @ rot.T
    assert np.abs(x.mean(0)).max() < 4 * s.max() / math.sqrt(2 * n)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.08 * s.max() ** 2)
    np.testing.assert_allclose(np.asarray(g2.scales()), np.broadcast_to(s / 1.6, (2 * n, 3)), rtol=1e-6)


def test_capacity_is_never_exceeded_and_priority_goes_to_the_largest_gradient():
    g = _slots(capacity=8, active=7)  # one free slot
    stats = dl.DensifyStats(
        grad_accum=jnp.asarray([3e-4, 9e-4, 5e-4, 1e-5, 4e-4, 0, 0, 0.0]),
        denom=jnp.ones((8,)),
        max_radii=jnp.zeros((8,)),
    )
    g2, _, _, info = dl.densify_and_prune(g, stats, None, jax.random.PRNGKey(0), extent=2.0)
    assert int(info["cloned"]) == 1 and int(info["dropped"]) == 3 and int(info["active"]) == 8
    np.testing.assert_array_equal(np.asarray(g2.means[7]), np.asarray(g.means[1]))  # slot 1 had 9e-4
    g3, _, _, info3 = dl.densify_and_prune(g2, stats, None, jax.random.PRNGKey(0), extent=2.0)
    assert int(info3["active"]) == 8 and int(info3["dropped"]) == 4  # full: nothing granted


def test_prune_big_only_after_the_reset_interval():
    g = _slots(capacity=8, active=4)
    g = g.replace(log_scales=g.log_scales.at[0].set(jnp.log(0.5)))  # 0.5 > 0.1 · extent 2
    stats = dl.DensifyStats.zeros(8)
    kw = dict(extent=2.0)
    _, _, _, info = dl.densify_and_prune(g, stats, None, jax.random.PRNGKey(0), prune_big=False, **kw)
    assert int(info["pruned"]) == 0
    g2, _, _, info = dl.densify_and_prune(g, stats, None, jax.random.PRNGKey(0), prune_big=True, **kw)
    assert int(info["pruned"]) == 1 and not bool(g2.active[0])
    # screen-size pruning: INRIA zeroes the radii first (never fires); the documented rule prunes slot 1
    stats = stats.replace(max_radii=jnp.asarray([0.0, 25.0, 3.0, 0.0, 0, 0, 0, 0]))
    g = g.replace(log_scales=g.log_scales.at[0].set(jnp.log(0.01)))
    _, _, _, info = dl.densify_and_prune(g, stats, None, jax.random.PRNGKey(0), prune_big=True, **kw)
    assert int(info["pruned"]) == 0
    g3, _, _, info = dl.densify_and_prune(
        g, stats, None, jax.random.PRNGKey(0), prune_big=True, reference_radii_reset=False, **kw
    )
    assert int(info["pruned"]) == 1 and not bool(g3.active[1])


def test_opacity_reset_and_schedule():
    g = _slots(capacity=8, active=4)
    g = g.replace(opacity_logits=jnp.asarray([3.0, -6.0, 0.0, 1.0, 7.0, 7.0, 7.0, 7.0]))
    opt_state = _moments(g)
    g2, opt2 = dl.reset_opacity(g, opt_state, 0.01)
    o = np.asarray(g2.opacities())
    np.testing.assert_allclose(o[[0, 2, 3]], 0.01, rtol=1e-5)
    assert o[1] == pytest.approx(float(jax.nn.sigmoid(-6.0)))  # already below: unchanged
    np.testing.assert_array_equal(np.asarray(g2.opacity_logits[4:]), [7.0] * 4)  # inactive untouched
    assert np.all(_mu(opt2, "opacity_logits") == 0)
    np.testing.assert_array_equal(_mu(opt2, "means"), _mu(opt_state, "means"))
    c = get_config("reference").densify
    assert dl.schedule(500, c)["densify"] is False and dl.schedule(600, c)["densify"] is True
    assert dl.schedule(3000, c)["reset_opacity"] and not dl.schedule(3000, c)["prune_big"]
    assert dl.schedule(3100, c)["prune_big"] and not dl.schedule(15_000, c)["accumulate"]


# --------------------------------------------------------------------------------------- init points
def _textured_plane_views(size=96, num_views=4, seed=0):
    """Views of a textured plane z = 0 (texture on [−1, 1]²) from cameras 2 units above it."""
    rng = np.random.default_rng(seed)
    tex = gaussian_filter(rng.uniform(0, 1, (256, 256, 3)), sigma=(2, 2, 0))
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    c2w = np.stack(
        [
            look_at([0.6 * np.cos(a), 0.6 * np.sin(a), 2.0], np.zeros(3), up=(0.0, 1.0, 0.0))
            for a in 2 * np.pi * np.arange(num_views) / num_views
        ]
    )
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    ims = []
    for m in c2w:
        d = np.stack([i / size - 0.5, j / size - 0.5, np.ones_like(i)], -1) @ m[:3, :3].T
        p = m[:3, 3] + (-m[2, 3] / d[..., 2])[..., None] * d
        uv = [(p[..., 1] + 1) / 2 * 255, (p[..., 0] + 1) / 2 * 255]
        ims.append(np.stack([map_coordinates(tex[..., c], uv, order=1, mode="reflect") for c in range(3)], -1))
    return np.stack(ims).astype(np.float32), c2w


def test_triangulation_recovers_the_plane():
    ims, c2w = _textured_plane_views()
    init = initial_points(ims, c2w, K_NORM, get_config("tiny").init)
    assert init.method == "triangulated", init.note
    assert init.num_triangulated >= 50
    pts = init.points
    assert np.percentile(np.abs(pts[:, 2]), 90) < 0.01  # on the plane z = 0 (cameras 2 units away)
    assert np.abs(pts[:, :2]).max() < 1.2
    assert init.colors.shape == pts.shape and 0 <= init.colors.min() and init.colors.max() <= 1


def test_random_fallback_lies_inside_every_frustum():
    ims, c2w = _textured_plane_views(size=24)
    flat = np.full_like(ims, 0.5)  # no texture: triangulation finds nothing
    cfg = get_config("tiny").init
    init = initial_points(flat, c2w, K_NORM, cfg, seed=3)
    assert init.method == "random" and init.num_triangulated == 0
    assert len(init.points) == cfg.num_random
    uv, z = project_world(init.points.astype(np.float64), c2w, np.broadcast_to(K_NORM, (4, 3, 3)), 24, 24)
    assert np.all(z >= 0.2 - 1e-6)
    assert np.all((uv >= -1e-4) & (uv <= 24 + 1e-4))
    np.testing.assert_allclose(init.colors, 0.5, atol=1e-6)
    # disjoint frusta are refused with a clear message
    away = c2w.copy()
    away[1] = look_at([10.0, 0, 2.0], [20.0, 0, 2.0])  # looks away from the plane
    with pytest.raises(ValueError, match="frusta"):
        random_frustum_points(flat, away, K_NORM, 100, near=0.2, far=5.0)


# ------------------------------------------------------------------------------------------ fitting
def test_overfit_single_image_above_30_db():
    img = _smooth_image()
    rng = np.random.default_rng(0)
    n = 256
    pix = rng.uniform(0, 1, (n, 2))
    pts = np.stack([(pix[:, 0] - 0.5) * 2.0, (pix[:, 1] - 0.5) * 2.0, np.full(n, 2.0)], -1)
    cols = img[(pix[:, 1] * SIZE).astype(int), (pix[:, 0] * SIZE).astype(int)]
    cfg = _fit_config(**{"densify.enabled": False})
    g, info = fit_scene(
        img[None],
        np.eye(4)[None],
        K_NORM,
        iterations=300,
        config=cfg,
        progress=False,
        init_points=InitPoints(pts, cols, "given", 0),
        return_info=True,
    )
    assert int(g.num_active) == n and g.capacity == CAPACITY
    out = render(g, jnp.eye(4), jnp.asarray(K_NORM, jnp.float32), SIZE, SIZE)
    assert float(psnr(np.clip(np.asarray(out.rgb), 0, 1), img)) > 30.0
    assert info.losses.shape == (300,) and info.losses[-1] < 0.2 * info.losses[0]
    assert info.extent == pytest.approx(scene_extent(np.eye(4)[None], pts))


@pytest.fixture(scope="module")
def object_views():
    """A held-back procedural object (three coloured blobs of 60 Gaussians each, black background) seen
    from 18 cameras on a wavy orbit of radius 3, rendered at 32 px; views 1 and 10 are held out."""
    rng = np.random.default_rng(5)
    centres = np.array([[0.4, 0, 0], [-0.3, 0.35, 0.1], [-0.1, -0.4, -0.2]])
    colours = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]])
    pts = np.concatenate([c + 0.15 * rng.normal(size=(60, 3)) for c in centres])
    cols = np.concatenate([np.clip(c + 0.1 * rng.normal(size=(60, 3)), 0, 1) for c in colours])
    truth = Gaussians.create(pts, cols, scales=0.08, capacity=CAPACITY, opacity=0.7)
    angles = 2 * np.pi * np.arange(18) / 18
    c2w = np.stack([look_at([3 * np.cos(a), 3 * np.sin(a), 0.8 * np.sin(3 * a)], np.zeros(3)) for a in angles])
    k = jnp.asarray(K_NORM, jnp.float32)
    ims = np.stack([np.asarray(render(truth, jnp.asarray(m, jnp.float32), k, SIZE, SIZE).rgb) for m in c2w])
    return np.clip(ims, 0, 1), c2w


def test_few_view_fit_beats_trivial_baselines_on_held_out_views(object_views):
    ims, c2w = object_views
    test = [1, 10]
    train = [t for t in range(18) if t not in test]
    cfg = _fit_config(
        **{
            "init.method": "random",
            "init.num_random": 512,
            "densify.start": 50,
            "densify.stop": 200,
            "densify.every": 50,
        }
    )
    g, info = fit_scene(
        ims[train], c2w[train], K_NORM, iterations=300, config=cfg, progress=False, seed=0, return_info=True
    )
    assert info.init.method == "random"
    assert [e["iteration"] for e in info.densify_events] == [100, 150]
    assert any(e["split"] + e["cloned"] > 0 for e in info.densify_events)
    assert int(g.num_active) <= CAPACITY and info.overflow_iterations == 0
    for v in test:
        out = render(g, jnp.asarray(c2w[v], jnp.float32), jnp.asarray(K_NORM, jnp.float32), SIZE, SIZE)
        fit_db = float(psnr(np.clip(np.asarray(out.rgb), 0, 1), ims[v]))
        mean_db = float(psnr(ims[train].mean(0), ims[v]))  # the mean training image
        nearest_db = float(psnr(ims[v - 1], ims[v]))  # copy the neighbouring training view
        assert fit_db > max(mean_db, nearest_db) + 2.0, (v, fit_db, mean_db, nearest_db)


def test_divergence_raises_with_the_last_good_gaussians(object_views):
    ims, c2w = object_views
    cfg = _fit_config(**{"init.method": "random", "optim.scaling_lr": 1e8, "densify.enabled": False})
    with pytest.raises(FitDivergedError, match="iteration") as err:
        fit_scene(ims[:4], c2w[:4], K_NORM, iterations=30, config=cfg, progress=False)
    e = err.value
    assert 1 <= e.iteration <= 30
    leaves = [x for x in jax.tree_util.tree_leaves(e.last_good) if x.dtype != bool]
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert len(e.info.losses) >= e.iteration - 1 and np.all(np.isfinite(e.info.losses[: e.iteration - 1]))


def test_view_sampling_and_extent():
    sampler = ViewSampler(5, seed=0)
    epochs = [sorted(sampler() for _ in range(5)) for _ in range(3)]
    assert epochs == [[0, 1, 2, 3, 4]] * 3  # INRIA: every view once per epoch
    weighted = ViewSampler(3, seed=0, probabilities=np.array([0.0, 1.0, 0.0]))
    assert {weighted() for _ in range(20)} == {1}
    assert [ViewSampler(5, seed=7)() for _ in range(2)] == [ViewSampler(5, seed=7)()] * 2  # seeded
    c2w = np.stack([np.eye(4)] * 3)
    c2w[:, :3, 3] = [[1, 0, 0], [-1, 0, 0], [0, 2, 0]]
    centre = np.array([0, 2 / 3, 0])
    assert scene_extent(c2w) == pytest.approx(1.1 * np.linalg.norm(c2w[2, :3, 3] - centre))


def test_adaptive_tile_capacity():
    cfg = get_config("few_view")  # capacity 300k, tile_capacity 0 = adaptive, chunk 32
    assert initial_tile_capacity(cfg) == 1024
    assert grown_tile_capacity(cfg, 1500) == 2272  # 1.5 × 1500 + 1 rounded up to 32
    cfg.capacity = 100
    assert initial_tile_capacity(cfg) == 128 and grown_tile_capacity(cfg, 99) == 128  # never above capacity
    cfg.render.tile_capacity = 512
    assert initial_tile_capacity(cfg) == 512


def test_bad_input_is_named():
    ims = np.zeros((2, 16, 16, 3), np.float32)
    c2w = np.stack([np.eye(4)] * 2)
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\]"):
        fit_scene(ims + 2, c2w, K_NORM, iterations=1, progress=False)
    with pytest.raises(ValueError, match="c2w"):
        fit_scene(ims, c2w[:1], K_NORM, iterations=1, progress=False)
    with pytest.raises(ValueError, match="weights"):
        fit_scene(ims, c2w, K_NORM, iterations=1, weights=[1.0, -1.0], progress=False)
    with pytest.raises(ValueError, match="c2w"):
        fit_scene(ims, c2w * np.nan, K_NORM, iterations=1, progress=False)
