"""Splatting core of genxd_jax.lift: closed forms, the reference rules, tiled == dense, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genxd_jax.lift import Gaussians, render
from genxd_jax.lift.project import covariance_2d, project, project_points, projection_jacobian
from genxd_jax.lift.render import render_dense
from genxd_jax.lift.sh import SH_C0, SH_C1, sh_basis, sh_to_rgb

H = W = 32
FOCAL = 1.2  # normalised: fx = 1.2 · W pixels
K = np.array([[FOCAL, 0.0, 0.5], [0.0, FOCAL, 0.5], [0.0, 0.0, 1.0]])
C2W = np.eye(4)  # camera at the origin looking down +z
BOTH = pytest.mark.parametrize("which", ["tiled", "dense"])
_project = jax.jit(project, static_argnames=("height", "width", "sh_degree"))


def _render(which, g, c2w=C2W, k=K, h=H, w=W, bg=(0.0, 0.0, 0.0), **kw):
    fn = render if which == "tiled" else render_dense
    return fn(g, c2w, k, h, w, bg, **kw)


def _layers(zs, opacities, colors, sigma_world, capacity=4):
    """Isotropic Gaussians on the optical axis at depths zs."""
    n = len(zs)
    means = np.stack([np.zeros(n), np.zeros(n), np.asarray(zs, float)], -1)
    g = Gaussians.create(
        means, colors_rgb=np.asarray(colors, float), scales=np.asarray(sigma_world, float), capacity=capacity
    )
    o = np.asarray(opacities, float)
    return g.replace(opacity_logits=g.opacity_logits.at[:n].set(jnp.asarray(np.log(o) - np.log1p(-o), jnp.float32)))


def _radial_alpha(opacity, sigma_world, z, h=H, w=W):
    """Closed form α(pixel) of an on-axis isotropic Gaussian: o·exp(−r²/2σ²), σ² = (f·s/z)² + 0.3, skip < 1/255."""
    f = FOCAL * w
    var = (f * sigma_world / z) ** 2 + 0.3
    u = np.arange(w) + 0.5 - 0.5 * w
    v = np.arange(h) + 0.5 - 0.5 * h
    r2 = u[None, :] ** 2 + v[:, None] ** 2
    a = np.minimum(0.99, opacity * np.exp(-0.5 * r2 / var))
    return np.where(a >= 1 / 255, a, 0.0), var


@BOTH
def test_single_isotropic_gaussian_closed_form(which):
    z, s, o, col = 3.0, 0.1, 0.7, [0.2, 0.6, 0.9]
    out = _render(which, _layers([z], [o], [col], [s]))
    expect, var = _radial_alpha(o, s, z)
    np.testing.assert_allclose(out.alpha, expect, atol=2e-6)
    np.testing.assert_allclose(out.rgb, expect[..., None] * np.array(col), atol=2e-6)
    np.testing.assert_allclose(out.depth, z * expect, atol=1e-5)
    # Reference radius ⌈3·√λmax⌉ (λmax = σ² for an isotropic Gaussian; the 0.1 floor is inactive here).
    assert int(out.radii[0]) == int(np.ceil(3 * np.sqrt(var + np.sqrt(0.1))))
    np.testing.assert_allclose(out.means2d[0], [W / 2, H / 2], atol=1e-5)
    assert out.radii[1:].tolist() == [0, 0, 0] and not bool(out.overflow)


@BOTH
def test_two_layers_composite_and_swap_with_depth(which):
    s, bg = 0.25, np.array([0.1, 0.2, 0.3])
    cols = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for za, zb in [(2.0, 4.0), (4.0, 2.0)]:
        out = _render(which, _layers([za, zb], [0.6, 0.8], cols, [s * za, s * zb]), bg=tuple(bg))
        a_a, _ = _radial_alpha(0.6, s * za, za)  # same screen size for both layers
        a_b, _ = _radial_alpha(0.8, s * zb, zb)
        (af, cf, zf), (ab, cb, zb_) = sorted([(a_a, cols[0], za), (a_b, cols[1], zb)], key=lambda t: t[2])
        expect = cf * af[..., None] + cb * (ab * (1 - af))[..., None] + bg * ((1 - af) * (1 - ab))[..., None]
        np.testing.assert_allclose(out.rgb, expect, atol=3e-6)
        np.testing.assert_allclose(out.alpha, 1 - (1 - af) * (1 - ab), atol=3e-6)
        np.testing.assert_allclose(out.depth, zf * af + zb_ * ab * (1 - af), atol=2e-5)
    # Swapping the depths swaps which colour dominates the centre.
    front_red = _render(which, _layers([2.0, 4.0], [0.9, 0.9], cols, [0.5, 1.0]))
    front_green = _render(which, _layers([4.0, 2.0], [0.9, 0.9], cols, [1.0, 0.5]))
    c = (H // 2, W // 2)
    assert front_red.rgb[c][0] > 0.85 and front_green.rgb[c][1] > 0.85


@pytest.mark.parametrize("which,kw", [("dense", {}), ("tiled", {}), ("tiled", {"tile_capacity": 4, "chunk_size": 1})])
def test_transmittance_stop(which, kw):
    """Two α=0.99 layers: T·(1−0.99) < 1e-4 stops before the second, and nothing behind it is blended."""
    cols = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    bg = (0.0, 0.0, 0.5)
    g = _layers([2.0, 3.0, 4.0], [0.999999, 0.999999, 0.3], cols, [2.0, 3.0, 4.0])
    out = _render(which, g, bg=bg, **kw)
    c = (H // 2, W // 2)
    # The front layer is blended (α=0.99, T=1); the second would leave T=0.01·0.01 < 1e-4: not blended, and
    # the third (which alone would leave T above 1e-4) is not blended either.
    np.testing.assert_allclose(out.rgb[c], [0.99, 0.0, 0.01 * 0.5], atol=1e-6)
    np.testing.assert_allclose(out.alpha[c], 0.99, atol=1e-6)
    np.testing.assert_allclose(out.depth[c], 2.0 * 0.99, atol=1e-5)
    # Control: with the second layer at α=0.5 both front layers and the third are blended.
    g2 = g.replace(opacity_logits=g.opacity_logits.at[1].set(0.0))
    out2 = _render(which, g2, bg=bg, **kw)
    a2 = 0.5 * np.exp(-0.5 * 0.5 / ((FOCAL * W) ** 2 + 0.3))
    a3 = 0.3 * np.exp(-0.5 * 0.5 / ((FOCAL * W) ** 2 + 0.3))
    t = 0.01 * (1 - a2)
    np.testing.assert_allclose(out2.rgb[c], [0.99, 0.01 * a2, t * a3 + t * (1 - a3) * 0.5], atol=1e-6)


def test_jacobian_equals_jacfwd_of_projection():
    rng = np.random.default_rng(0)
    fx, fy, cx, cy = 40.0, 35.0, 17.0, 15.0
    lim_x, lim_y = 1.3 * 16 / fx, 1.3 * 16 / fy
    for _ in range(5):
        t = jnp.asarray(rng.normal(size=3) * [0.2, 0.2, 0.3] + [0, 0, 2.0], jnp.float32)
        auto = jax.jacfwd(lambda p: project_points(p, fx, fy, cx, cy))(t)
        np.testing.assert_allclose(projection_jacobian(t, fx, fy, lim_x, lim_y), auto, rtol=1e-5, atol=1e-6)
    # Outside the clamp x/z is held at the limit (the reference behaviour), so J differs from jacfwd.
    far = jnp.array([3.0, 0.0, 1.0])
    j = projection_jacobian(far, fx, fy, lim_x, lim_y)
    np.testing.assert_allclose(j[0, 2], -fx * lim_x, rtol=1e-6)


def test_cov2d_matches_monte_carlo():
    rng = np.random.default_rng(1)
    fx = fy = 60.0
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    a = rng.normal(size=(3, 3)) * 0.02
    cov3 = a @ a.T + 1e-4 * np.eye(3)
    mean_cam = np.array([0.1, -0.05, 2.5])
    mean_world = rot.T @ mean_cam  # p_cam = rot · p_world
    samples = rng.multivariate_normal(mean_world, cov3, size=200_000) @ rot.T
    uv = samples[:, :2] / samples[:, 2:] * fx
    mc = np.cov(uv.T)
    cov2 = covariance_2d(jnp.asarray(cov3), jnp.asarray(rot), jnp.asarray(mean_cam), fx, fy, 10.0, 10.0)
    np.testing.assert_allclose(np.asarray(cov2) - 0.3 * np.eye(2), mc, rtol=0.05, atol=0.02 * np.abs(mc).max())


def test_sh_basis_orthonormal_and_reference_signs():
    rng = np.random.default_rng(2)
    d = rng.normal(size=(400_000, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    y = np.concatenate([np.full((len(d), 1), SH_C0), np.asarray(sh_basis(jnp.asarray(d)))], -1)
    gram = 4 * np.pi * (y.T @ y) / len(d)
    np.testing.assert_allclose(gram, np.eye(16), atol=0.03)
    # Degree-1 signs of the reference: -C1·y, +C1·z, -C1·x.
    expect = SH_C1 * np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(sh_basis(jnp.eye(3))[:, :3], expect, atol=1e-7)
    # Degree truncation.
    assert np.all(np.asarray(sh_basis(jnp.asarray(d[:10]), 1))[:, 3:] == 0)
    rest = jnp.ones((15, 3))
    assert float(jnp.abs(sh_to_rgb(jnp.zeros(3), rest, jnp.array([0.0, 0, 1]), 0) - 0.5).max()) == 0.0


def test_colour_uses_direction_from_camera_centre():
    g = _layers([0.0], [0.5], [[0.5, 0.5, 0.5]], [0.1])
    g = g.replace(sh_rest=g.sh_rest.at[0, 1].set(jnp.array([0.3, -0.2, 2.0])))  # the +C1·z coefficient
    c2w = np.eye(4)
    c2w[2, 3] = -3.0  # camera behind, looking at +z: direction (0, 0, 1)
    proj = _project(g, c2w, K, H, W)
    np.testing.assert_allclose(proj.colors[0], [0.5 + SH_C1 * 0.3, 0.5 - SH_C1 * 0.2, 0.5 + SH_C1 * 2.0], atol=1e-6)
    proj0 = _project(g, c2w, K, H, W, sh_degree=0)
    np.testing.assert_allclose(proj0.colors[0], [0.5, 0.5, 0.5], atol=1e-6)


@BOTH
def test_near_plane_and_inactive_slots(which):
    g = _layers([0.15, 3.0], [0.9, 0.5], [[1, 0, 0], [0, 1, 0]], [0.05, 0.1])
    out = _render(which, g)
    assert int(out.radii[0]) == 0 and int(out.radii[1]) > 0  # z = 0.15 ≤ 0.2 is culled
    alone = _render(which, _layers([3.0], [0.5], [[0, 1, 0]], [0.1]))
    np.testing.assert_allclose(out.rgb, alone.rgb, atol=1e-7)
    # An inactive slot in front with full opacity changes nothing and gets zero gradient.
    g2 = _layers([3.0, 1.0], [0.5, 0.99], [[0, 1, 0], [1, 1, 1]], [0.1, 1.0])
    g2 = g2.replace(active=g2.active.at[1].set(False))
    out2 = _render(which, g2)
    np.testing.assert_allclose(out2.rgb, alone.rgb, atol=1e-7)
    assert int(out2.radii[1]) == 0


# ----------------------------------------------------------------- tiled == dense on a random scene
SH2, SW2 = 37, 45  # not multiples of 16


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    n = 60
    means = rng.uniform([-1.2, -1.0, 2.0], [1.2, 1.0, 5.0], size=(n, 3))
    g = Gaussians.create(
        means, colors_rgb=rng.uniform(size=(n, 3)), scales=rng.uniform(0.03, 0.25, (n, 3)), capacity=64
    )
    g = g.replace(
        quats=jnp.asarray(rng.normal(size=(64, 4)), jnp.float32),
        opacity_logits=jnp.asarray(rng.normal(1.0, 1.5, size=64), jnp.float32),
        sh_rest=jnp.asarray(rng.normal(size=(64, 15, 3)) * 0.2, jnp.float32),
    )
    # Slots 60..63 are inactive but hold large opaque Gaussians right in front of the camera.
    g = g.replace(
        means=g.means.at[60:].set(jnp.array([0.0, 0.0, 1.0])),
        log_scales=g.log_scales.at[60:].set(0.0),
        opacity_logits=g.opacity_logits.at[60:].set(8.0),
    )
    c2w = np.eye(4)
    c2w[:3, 3] = [0.1, -0.05, -0.3]
    k = np.array([[0.9, 0.0, 0.47], [0.0, 1.1, 0.55], [0.0, 0.0, 1.0]])
    return g, c2w, k


@functools.lru_cache(maxsize=None)
def _loss_fn(which, **kw):
    def loss(params, offset, g, c2w, k):
        out = _render(which, g.with_params(params), c2w, k, SH2, SW2, (0.2, 0.3, 0.4), means2d_offset=offset, **kw)
        wts = jnp.linspace(0.5, 1.5, SH2 * SW2 * 3).reshape(SH2, SW2, 3)
        return jnp.sum(out.rgb * wts) + 0.1 * jnp.sum(out.depth) + jnp.sum(out.alpha)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def test_tiled_equals_dense_values_and_gradients(scene):
    g, c2w, k = scene
    tiled = render(g, c2w, k, SH2, SW2, (0.2, 0.3, 0.4), tile_capacity=64, chunk_size=16)
    dense = render_dense(g, c2w, k, SH2, SW2, (0.2, 0.3, 0.4))
    assert not bool(tiled.overflow)
    # Straddling: some visible Gaussians touch more than one tile.
    rect = np.asarray(_project(g, c2w, k, SH2, SW2).tile_rect)
    assert np.sum((rect[:, 2] - rect[:, 0]) * (rect[:, 3] - rect[:, 1]) > 1) > 10
    assert float(jnp.mean(dense.alpha)) > 0.3 and float(jnp.min(dense.alpha)) < 0.9  # background visible
    for f in ("rgb", "alpha", "depth"):
        np.testing.assert_allclose(getattr(tiled, f), getattr(dense, f), atol=1e-5, err_msg=f)
    assert int(tiled.max_tile_count) == int(dense.max_tile_count) <= 64
    # The inactive slots render nothing: moving them away changes no pixel.
    moved = g.replace(means=g.means.at[60:].set(jnp.array([0.0, 0.0, -5.0])))
    np.testing.assert_array_equal(
        render(moved, c2w, k, SH2, SW2, (0.2, 0.3, 0.4), tile_capacity=64, chunk_size=16).rgb, tiled.rgb
    )
    assert np.all(np.asarray(tiled.radii)[60:] == 0)
    np.testing.assert_array_equal(tiled.radii, dense.radii)

    offset = jnp.zeros((64, 2))
    p = g.params()
    (lt, gt), (ld, gd) = (
        _loss_fn("tiled", tile_capacity=64, chunk_size=16)(p, offset, g, c2w, k),
        _loss_fn("dense")(p, offset, g, c2w, k),
    )
    np.testing.assert_allclose(lt, ld, rtol=1e-6)
    for name in gt[0]:
        a, b = gt[0][name], gd[0][name]
        assert float(jnp.abs(b).max()) > 0, name
        assert np.all(np.asarray(a)[60:] == 0) and np.all(np.asarray(b)[60:] == 0), name  # inactive slots
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(jnp.abs(b).max()), err_msg=name)
    np.testing.assert_allclose(gt[1], gd[1], rtol=2e-4, atol=2e-4 * float(jnp.abs(gd[1]).max()))
    # The offset gradient is ∂L/∂mean2D in pixels: a first-order prediction of a small pixel shift.
    g_off = gt[1]
    visible = np.asarray(tiled.radii) > 0
    assert np.all(np.asarray(g_off)[~visible] == 0) and np.any(np.asarray(g_off)[visible] != 0)
    i = int(np.argmax(np.abs(np.asarray(g_off)[:, 0])))
    delta = 0.02
    shifted = _loss_fn("tiled", tile_capacity=64, chunk_size=16)(p, offset.at[i, 0].set(delta), g, c2w, k)[0]
    np.testing.assert_allclose((shifted - lt) / delta, g_off[i, 0], rtol=0.05)


def test_overflow_is_reported(scene):
    g, c2w, k = scene
    out = render(g, c2w, k, SH2, SW2, tile_capacity=8, chunk_size=8)
    dense = render_dense(g, c2w, k, SH2, SW2)
    assert int(dense.max_tile_count) > 8
    assert bool(out.overflow)
    assert int(out.max_tile_count) == int(dense.max_tile_count)  # exact even when it overflowed
    # What was rendered is the nearest 8 per tile: a different image, never silently equal-looking.
    assert float(jnp.abs(out.rgb - dense.rgb).max()) > 1e-3


def test_check_grads_float64():
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        n = 4
        means = np.concatenate([rng.uniform(-0.3, 0.3, (n, 2)), rng.uniform(2.0, 3.0, (n, 1))], -1)
        g = Gaussians.create(means, colors_rgb=rng.uniform(size=(n, 3)), scales=0.4)
        g = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x, g)
        g = g.replace(
            quats=jnp.asarray(rng.normal(size=(n, 4))),
            log_scales=jnp.asarray(np.log(rng.uniform(1.5, 2.5, (n, 3)))),
            opacity_logits=jnp.asarray(rng.uniform(-1.0, 1.0, n)),
            sh_rest=jnp.asarray(rng.normal(size=(n, 15, 3)) * 0.1),
        )
        c2w = np.eye(4)
        c2w[:3, 3] = [0.05, 0.02, 0.1]
        k = np.array([[0.8, 0.0, 0.5], [0.0, 0.8, 0.5], [0.0, 0.0, 1.0]])

        def f(means, quats, log_scales, opacity_logits, sh_dc, sh_rest):
            gg = g.replace(
                means=means,
                quats=quats,
                log_scales=log_scales,
                opacity_logits=opacity_logits,
                sh_dc=sh_dc,
                sh_rest=sh_rest,
            )
            out = render(gg, c2w, k, 16, 16, (0.1, 0.2, 0.3), tile_capacity=8, chunk_size=4)
            return jnp.concatenate([out.rgb.ravel(), out.depth.ravel()])

        args = (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh_dc, g.sh_rest)
        assert f(*args).dtype == jnp.float64
        out = render(g, c2w, k, 16, 16)
        assert float(out.alpha.min()) > 0.05 and int(jnp.sum(out.radii > 0)) == n  # smooth regime, all visible
        check_grads(f, args, order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-5)
    assert jnp.zeros(1).dtype == jnp.float32  # x64 did not leak


def test_bad_arguments_are_named():
    g = _layers([3.0], [0.5], [[0, 1, 0]], [0.1])
    with pytest.raises(ValueError, match="c2w must be one"):
        render(g, np.eye(4)[:3], K, H, W)
    with pytest.raises(ValueError, match="intrinsics must be one"):
        render(g, C2W, np.stack([K, K]), H, W)
    with pytest.raises(ValueError, match="sh_degree"):
        render(g, C2W, K, H, W, sh_degree=4)
    with pytest.raises(ValueError, match="rasterizer"):
        render(g, C2W, K, H, W, rasterizer="nope")


def test_tiled_occupancy_blocks_equal_dense():
    """Tiles of very different loads (a dense cluster in one corner, sparse elsewhere, empty tiles), composited
    in several occupancy-sorted blocks (block size not dividing the tile count): values and gradients = dense."""
    from genxd_jax.lift.raster_dense import rasterize_dense
    from genxd_jax.lift.raster_tiled import rasterize_tiled, tile_counts

    h, w, n = 48, 64, 64  # 3 × 4 = 12 tiles
    rng = np.random.default_rng(7)
    cluster = np.concatenate([rng.uniform([-1.25, -1.1], [-1.0, -0.9], (44, 2)), rng.uniform(2.8, 3.2, (44, 1))], 1)
    sparse = rng.uniform([-0.2, -0.8, 2.5], [1.5, 1.0, 4.0], size=(n - 44, 3))
    scales = np.concatenate([rng.uniform(0.01, 0.03, (44, 3)), rng.uniform(0.03, 0.1, (n - 44, 3))])
    g = Gaussians.create(np.concatenate([cluster, sparse]), colors_rgb=rng.uniform(size=(n, 3)), scales=scales)
    g = g.replace(opacity_logits=jnp.asarray(rng.normal(0.0, 1.0, size=n), jnp.float32))
    k = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    bg = jnp.array([0.2, 0.3, 0.4])

    counts = np.asarray(tile_counts(_project(g, C2W, k, height=h, width=w), h, w))
    assert counts.max() >= 30 and np.median(counts) <= counts.max() / 4 and counts.min() == 0, counts

    def loss(params, which):
        proj = project(g.with_params(params), C2W, k, h, w)
        if which == "tiled":
            rgb, alpha, depth = rasterize_tiled(proj, h, w, bg, tile_capacity=64, chunk_size=4, tile_block=5)[:3]
        else:
            rgb, alpha, depth = rasterize_dense(proj, h, w, bg)[:3]
        wts = jnp.linspace(0.5, 1.5, h * w * 3).reshape(h, w, 3)
        return jnp.sum(rgb * wts) + 0.1 * jnp.sum(depth) + jnp.sum(alpha), (rgb, alpha, depth)

    p = g.params()
    (lt, outs_t), gt = jax.jit(jax.value_and_grad(functools.partial(loss, which="tiled"), has_aux=True))(p)
    (ld, outs_d), gd = jax.jit(jax.value_and_grad(functools.partial(loss, which="dense"), has_aux=True))(p)
    for name, a, b in zip(("rgb", "alpha", "depth"), outs_t, outs_d):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(lt, ld, rtol=1e-6)
    for name in gt:
        a, b = gt[name], gd[name]
        assert float(jnp.abs(b).max()) > 0, name
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(jnp.abs(b).max()), err_msg=name)
