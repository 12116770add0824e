"""Fitting 3D Gaussians to posed views: ``fit_scene`` and the reusable training pieces.

The loop is the reference 3D-GS training (graphdeco-inria gaussian-splatting ``train.py``) over a fixed-capacity
state so that everything is jitted once:

1. initial points (``init_points``: triangulated with the known poses, else random in the common frustum,
   or given), Gaussians with the reference initialisation (kNN scales, opacity 0.1, identity rotation, SH DC
   from the point colours), padded to ``config.capacity`` slots;
2. per iteration (1-based, as INRIA): one view drawn with a seeded NumPy RNG — a fresh random permutation
   per epoch as INRIA's ``viewpoint_stack``, or, with ``weights`` and ``config.view_weights = "sampling"``
   (default), i.i.d. draws with probabilities ∝ weights; with ``"loss"`` the views keep the per-epoch order and
   each view's loss is multiplied by V·wᵥ/Σw (mean 1; this also scales its densification statistic);
   one jitted :func:`make_train_step` step: render + loss ((1 − λ)·L1 + λ·D-SSIM [+ LPIPS]) + gradients
   + optax update + densification statistics;
   the SH degree grows by one every ``sh_increase_every`` iterations (higher bands are masked to zero, so
   one compiled step serves all degrees);
3. density control (:mod:`genxd_jax.lift.densify`) as separate jitted masked ops on INRIA's schedule;
4. a non-finite loss or gradient freezes the state at the last good iterate (inside the step, so nothing is
   lost between host checks) and :class:`FitDivergedError` is raised naming the iteration, with the last
   good Gaussians attached.

Scene extent (INRIA ``getNerfppNorm``): 1.1 × the largest distance from a camera centre to the mean centre;
with a single view (or coincident cameras) 1.1 × the median distance from the camera to the initial points.

The 4D fitting reuses :func:`make_train_step` (any parameter pytree and render-and-loss function),
:class:`TrainState`, :func:`genxd_jax.lift.densify.densify_and_prune` and :func:`genxd_jax.lift.optim.adam_for`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from genxd_jax.geometry import broadcast_intrinsics, validate_c2w
from genxd_jax.lift import densify as densify_lib
from genxd_jax.lift.densify import DensifyStats, accumulate_stats
from genxd_jax.lift.fit_config import get_config
from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.init_points import InitPoints, initial_points
from genxd_jax.lift.losses import photometric_loss
from genxd_jax.lift.optim import gaussian_params, learning_rates, make_optimizer, set_learning_rates

log = logging.getLogger(__name__)


class FitDivergedError(RuntimeError):
    """The loss (or a gradient) became non-finite at ``iteration`` (1-based).

    ``last_good`` holds the Gaussians after the last finite iteration (iteration − 1), ``info`` the
    :class:`FitInfo` so far.
    """

    def __init__(self, iteration: int, last_good: Gaussians, info=None):
        super().__init__(
            f"fit diverged: non-finite loss or gradient at iteration {iteration}; the Gaussians after "
            f"iteration {iteration - 1} are kept on this error as .last_good"
        )
        self.iteration = int(iteration)
        self.last_good = last_good
        self.info = info


@struct.dataclass
class TrainState:
    """The fixed-shape training state.

    params: the optimised pytree (for 3D the dict of :func:`genxd_jax.lift.optim.gaussian_params`);
    active (N,) bool; opt_state: its optax state; stats: :class:`DensifyStats`; step: completed iterations
    (int32); diverged_at: the 1-based iteration whose loss or gradient was first non-finite, −1 if none (once
    set, every later step leaves the state unchanged).
    """

    params: object
    active: jax.Array
    opt_state: object
    stats: DensifyStats
    step: jax.Array
    diverged_at: jax.Array


def init_train_state(params, active, optimizer: optax.GradientTransformation) -> TrainState:
    n = active.shape[0]
    return TrainState(
        params=params,
        active=active,
        opt_state=optimizer.init(params),
        stats=DensifyStats.zeros(n),
        step=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32),
    )


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _keep_inactive(new, old, active):
    """Leaves with leading dimension N keep their old values in inactive slots."""
    n = active.shape[0]

    def pick(a, b):
        if getattr(a, "ndim", 0) == 0 or a.shape[0] != n:
            return a
        return jnp.where(active.reshape((n,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def make_train_step(render_loss_fn: Callable, optimizer: optax.GradientTransformation, height: int, width: int):
    """A jitted training step ``step(state, batch, accumulate) -> (state, metrics)``.

    Args:
      render_loss_fn: ``(params, active, batch, means2d_offset) -> (loss, aux)``; ``means2d_offset`` (N, 2)
        zeros to be passed to :func:`genxd_jax.lift.render` (so its gradient is ∂L/∂mean2D in pixels);
        ``aux`` a dict holding at least ``radii`` (N,) (the rendered radii, 0 = not visible) and any scalar
        metrics.
      optimizer: the optax transformation of ``params``.
      height, width: the rendered image size (for the NDC scaling of the statistic).
    If ``batch`` has a ``"learning_rates"`` dict {group: lr}, those injected learning rates are set in the
    optimiser state first (:func:`genxd_jax.lift.optim.set_learning_rates`).
    The step: value and gradient of the loss w.r.t. params and offset, optax update, inactive slots kept
    unchanged, densification statistics accumulated when ``accumulate`` (a traced bool), step + 1. If the loss
    or any gradient is non-finite, or the state had already diverged, the state is returned unchanged apart
    from ``diverged_at`` and ``step``. ``metrics`` = {"loss", "finite", **scalar aux}.
    """

    def step(state: TrainState, batch, accumulate):
        n = state.active.shape[0]
        offset = jnp.zeros((n, 2), jnp.float32)
        grad_fn = jax.value_and_grad(render_loss_fn, argnums=(0, 3), has_aux=True)
        (loss, aux), (g_params, g_offset) = grad_fn(state.params, state.active, batch, offset)
        finite = jnp.isfinite(loss) & _all_finite(g_params) & _all_finite(g_offset)
        opt_state = state.opt_state
        if "learning_rates" in batch:
            opt_state = set_learning_rates(opt_state, batch["learning_rates"])
        updates, opt_state = optimizer.update(g_params, opt_state, state.params)
        params = _keep_inactive(optax.apply_updates(state.params, updates), state.params, state.active)
        stats = jax.lax.cond(
            accumulate,
            lambda s: accumulate_stats(s, g_offset, aux["radii"], width, height),
            lambda s: s,
            state.stats,
        )
        iteration = state.step + 1
        good = finite & (state.diverged_at < 0)
        new = state.replace(params=params, opt_state=opt_state, stats=stats)
        kept = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, state)
        diverged_at = jnp.where((state.diverged_at < 0) & ~finite, iteration, state.diverged_at)
        kept = kept.replace(step=iteration, diverged_at=diverged_at)
        metrics = {"loss": loss, "finite": finite}
        metrics.update({k: v for k, v in aux.items() if k != "radii" and getattr(v, "ndim", 1) == 0})
        return kept, metrics

    return jax.jit(step)


def sh_band_mask(sh_degree):
    """(15, 1) float mask of the SH rest coefficients used at degree ``sh_degree`` (traced int ok)."""
    k = jnp.arange(15)
    return (k < (jnp.asarray(sh_degree) + 1) ** 2 - 1).astype(jnp.float32)[:, None]


def make_render_loss_3d(height: int, width: int, config, *, render_fn=None, lpips_fn=None, tile_capacity=None):
    """The 3D ``render_loss_fn`` for :func:`make_train_step`.

    ``tile_capacity``: overrides ``config.render.tile_capacity`` (``fit_scene`` sizes it adaptively when the
    config says 0).

    ``batch`` = {"image" (H, W, 3), "c2w" (4, 4), "intrinsics" (3, 3), "sh_degree" int32, optional
    "loss_weight" float} for one view (so the compiled step does not depend on the number of views).
    Renders at the config's max SH degree with the bands above ``sh_degree`` zeroed, against ``image``.
    """
    if render_fn is None:
        from genxd_jax.lift.render import render as render_fn
    background = tuple(float(x) for x in config.background)
    max_sh = int(config.max_sh_degree)
    lam = float(config.loss.lambda_dssim)
    lpips_weight = float(config.loss.lpips_weight)
    render_kwargs = dict(config.render) if "render" in config else {}
    if tile_capacity is not None:
        render_kwargs["tile_capacity"] = int(tile_capacity)
    if int(render_kwargs.get("tile_capacity", 1)) <= 0:
        render_kwargs.pop("tile_capacity")  # the renderer's default

    def render_loss(params, active, batch, offset):
        g = Gaussians(active=active, **params)
        g = g.replace(sh_rest=g.sh_rest * sh_band_mask(batch["sh_degree"]))
        out = render_fn(
            g,
            batch["c2w"],
            batch["intrinsics"],
            height,
            width,
            background,
            sh_degree=max_sh,
            means2d_offset=offset,
            **render_kwargs,
        )
        loss, terms = photometric_loss(
            out.rgb, batch["image"], lambda_dssim=lam, lpips_fn=lpips_fn, lpips_weight=lpips_weight
        )
        if "loss_weight" in batch:
            loss = loss * batch["loss_weight"]
        aux = {"radii": out.radii, "overflow": out.overflow, "max_tile_count": out.max_tile_count, **terms}
        return loss, aux

    return render_loss


_STEP_CACHE: dict = {}


def initial_tile_capacity(config) -> int:
    """Per-tile capacity of the first compiled step: ``config.render.tile_capacity`` if > 0, else
    min(capacity, 1024) rounded up to the chunk size (fit_scene then grows it when a render overflows)."""
    chunk = int(config.render.chunk_size)
    fixed = int(config.render.tile_capacity)
    if fixed > 0:
        return fixed
    return -(-min(int(config.capacity), 1024) // chunk) * chunk


def grown_tile_capacity(config, max_tile_count: int) -> int:
    """The adaptive per-tile capacity after an overflow: 1.5 × the largest count seen, rounded up to the chunk
    size, at most the (rounded) slot capacity."""
    chunk = int(config.render.chunk_size)
    cap = -(-int(config.capacity) // chunk) * chunk
    return min(cap, -(-int(1.5 * max_tile_count + 1) // chunk) * chunk)


def _compiled_step_3d(height: int, width: int, config, render_fn, lpips_fn, tile_capacity: int):
    """(optimizer, jitted step) for 3D fitting, cached per image size, Adam β/ε, loss and render settings and
    functions, so repeated fits (tests, CLI runs over several scenes) compile once per capacity. The cache
    holds one entry per distinct key for the life of the process."""
    # Learning rates are injected per iteration, so only Adam's β/ε enter the compiled step.
    adam = tuple(float(config.optim[k]) for k in ("adam_b1", "adam_b2", "adam_eps"))
    fields = {name: config[name] for name in ("loss", "render") if name in config}
    key = (
        int(height),
        int(width),
        adam,
        repr(sorted((k, repr(v)) for k, v in fields.items())),
        tuple(float(x) for x in config.background),
        int(config.max_sh_degree),
        int(config.capacity),
        int(tile_capacity),
        render_fn,
        lpips_fn,
    )
    if key not in _STEP_CACHE:
        optimizer = make_optimizer(config.optim)
        render_loss = make_render_loss_3d(
            height, width, config, render_fn=render_fn, lpips_fn=lpips_fn, tile_capacity=tile_capacity
        )
        _STEP_CACHE[key] = (optimizer, make_train_step(render_loss, optimizer, height, width))
    return _STEP_CACHE[key]


def scene_extent(c2w, points=None) -> float:
    """INRIA ``getNerfppNorm`` radius: 1.1 × max distance from a camera centre to their mean (world units).

    When the cameras (nearly) coincide, 1.1 × the median distance from the mean centre to ``points`` (M, 3)
    if given, else 1.0.
    """
    centres = np.asarray(c2w, dtype=np.float64)[..., :3, 3].reshape(-1, 3)
    mean = centres.mean(0)
    radius = 1.1 * float(np.max(np.linalg.norm(centres - mean, axis=-1)))
    if radius > 1e-6:
        return radius
    if points is not None and len(points):
        d = float(np.median(np.linalg.norm(np.asarray(points, np.float64) - mean, axis=-1)))
        if d > 1e-6:
            return 1.1 * d
    return 1.0


@dataclasses.dataclass
class FitInfo:
    """What happened in a fit: ``losses`` (per iteration, float32), ``init`` (the :class:`InitPoints` or None
    when ``init_points`` was a Gaussians), ``extent``, ``densify_events`` (one dict per densification:
    iteration, cloned, split, pruned, dropped, active), ``saturated`` (a densification was refused slots),
    ``overflow_iterations`` (how many renders overflowed a tile: with the adaptive tile capacity only those
    between an overflow and the next host check, after which the step is recompiled with room for 1.5× the
    largest tile count seen), ``tile_capacity`` at the end, ``num_active`` at the end,
    ``seconds`` (wall time of the loop, compile included)."""

    losses: np.ndarray
    init: InitPoints | None
    extent: float
    densify_events: list
    saturated: bool
    overflow_iterations: int
    tile_capacity: int
    num_active: int
    seconds: float


def _check_inputs(images, c2w, intrinsics, weights):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"fit_scene: images must have shape (V, H, W, 3), got {images.shape}")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError("fit_scene: images contain non-finite values")
    if images.min() < -1e-3 or images.max() > 1.0 + 1e-3:
        raise ValueError(f"fit_scene: images must be in [0, 1], got values in [{images.min():.3g}, {images.max():.3g}]")
    v = images.shape[0]
    c2w = validate_c2w(c2w, name="fit_scene: c2w")
    if c2w.shape != (v, 4, 4):
        raise ValueError(f"fit_scene: c2w must have shape ({v}, 4, 4) for {v} images, got {c2w.shape}")
    k = broadcast_intrinsics(intrinsics, v)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (v,) or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(
                f"fit_scene: weights must be ({v},) finite, non-negative and not all zero, got {weights!r}"
            )
        weights = weights / weights.sum()
    return np.clip(images, 0.0, 1.0), c2w, k, weights


class ViewSampler:
    """Seeded view order: INRIA's random permutation per epoch, or i.i.d. draws with probabilities."""

    def __init__(self, num_views: int, seed: int, probabilities=None):
        self.rng = np.random.default_rng(seed)
        self.n = num_views
        self.p = probabilities
        self._stack: list[int] = []

    def __call__(self) -> int:
        if self.p is not None:
            return int(self.rng.choice(self.n, p=self.p))
        if not self._stack:
            self._stack = list(self.rng.permutation(self.n))
        return int(self._stack.pop())


def fit_scene(
    images,
    c2w,
    intrinsics,
    iterations: int | None = None,
    seed: int = 0,
    *,
    weights=None,
    config=None,
    init_points=None,
    progress: bool = True,
    lpips_fn: Callable | None = None,
    render_fn: Callable | None = None,
    return_info: bool = False,
):
    """Fits 3D Gaussians to posed views (reference 3D-GS training; see the module docstring).

    Args:
      images: (V, H, W, 3) in [0, 1].
      c2w: (V, 4, 4) OpenCV camera-to-world.
      intrinsics: (3, 3) or (V, 3, 3), normalised by the image width/height.
      iterations: number of iterations; None: ``config.iterations`` (2000 with the default
        ``single_view`` config). The position learning rate decays over this many iterations.
      seed: seeds view sampling, random initial points and split samples.
      weights: optional (V,) non-negative view weights: sampling probabilities (``config.view_weights =
        "sampling"``, default) or loss weights normalised to mean 1 (``"loss"``).
      config: a :mod:`genxd_jax.lift.fit_config` ConfigDict (default ``get_config("single_view")``).
      init_points: None (``config.init``), an (M, 3) array of points (grey, or (points, colors) as a
        tuple), an :class:`InitPoints`, or a :class:`Gaussians` to continue from (padded to the capacity).
      progress: show a tqdm bar with ETA.
      lpips_fn: ``(a, b) -> distance`` on (H, W, 3) images in [0, 1]; used when ``config.loss.lpips_weight``
        > 0.
      render_fn: the renderer (default :func:`genxd_jax.lift.render`), same signature.
      return_info: also return a :class:`FitInfo`.
    Returns the fitted :class:`Gaussians` (capacity ``config.capacity``), or ``(gaussians, info)``.
    Raises FitDivergedError (with ``.last_good``) when the loss turns non-finite; ValueError for bad input.
    """
    config = get_config("single_view") if config is None else config
    iterations = int(config.iterations if iterations is None else iterations)
    if iterations < 1:
        raise ValueError(f"fit_scene: iterations must be >= 1, got {iterations}")
    images, c2w, k, probs = _check_inputs(images, c2w, intrinsics, weights)
    v, h, w, _ = images.shape
    capacity = int(config.capacity)

    # ---- initial Gaussians
    init = None
    if isinstance(init_points, Gaussians):
        g0 = init_points.validate()
        if g0.capacity > capacity:
            raise ValueError(f"fit_scene: init Gaussians have {g0.capacity} slots > config.capacity={capacity}")
        g0 = g0.pad_to(capacity)
        points = np.asarray(g0.means)[np.asarray(g0.active)]
    else:
        if init_points is None:
            init = initial_points(images, c2w, k, config.init, seed=seed)
        elif isinstance(init_points, InitPoints):
            init = init_points
        else:
            pts, cols = init_points if isinstance(init_points, tuple) else (init_points, None)
            pts = np.asarray(pts, np.float64)
            if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
                raise ValueError(f"fit_scene: init_points must have shape (M, 3), got {pts.shape}")
            cols = np.full_like(pts, 0.5) if cols is None else np.asarray(cols, np.float64)
            init = InitPoints(pts, cols, "given", 0, f"{len(pts)} given points")
        points = np.asarray(init.points)
        if len(points) > capacity:
            raise ValueError(f"fit_scene: {len(points)} initial points exceed config.capacity={capacity}")
        g0 = Gaussians.create(points, np.clip(init.colors, 0, 1), capacity=capacity, opacity=float(config.init.opacity))
    extent = scene_extent(c2w, points)

    tile_capacity = initial_tile_capacity(config)
    adaptive_tiles = int(config.render.tile_capacity) <= 0
    optimizer, step_fn = _compiled_step_3d(h, w, config, render_fn, lpips_fn, tile_capacity)
    state = init_train_state(gaussian_params(g0), g0.active, optimizer)
    # one device copy per view, picked on the host: the step's shapes do not depend on the number of views
    views = [
        {
            "image": jnp.asarray(images[i]),
            "c2w": jnp.asarray(c2w[i], jnp.float32),
            "intrinsics": jnp.asarray(k[i], jnp.float32),
        }
        for i in range(v)
    ]
    mode = str(config.get("view_weights", "sampling"))
    if mode not in ("sampling", "loss"):
        raise ValueError(f"fit_scene: config.view_weights must be 'sampling' or 'loss', got {mode!r}")
    loss_weights = np.ones(v) if (probs is None or mode == "sampling") else probs * v  # mean weight 1
    sampler = ViewSampler(v, seed, probs if mode == "sampling" else None)
    key = jax.random.PRNGKey(seed)
    dc = config.densify
    max_sh = int(config.max_sh_degree)
    every_sh = int(config.sh_increase_every)
    check_every = max(1, int(config.check_every))

    losses: list = []
    pending: list = []
    events: list = []
    overflow_count = 0
    saturated = False
    t0 = time.perf_counter()
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc="fit 3D Gaussians", unit="it", disable=not progress)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None

    def flush():
        nonlocal overflow_count, tile_capacity, step_fn
        if not pending:
            return
        fetched = jax.device_get(pending)
        max_count = 0
        for m in fetched:
            losses.append(float(m["loss"]))
            overflow_count += int(bool(m.get("overflow", False)))
            max_count = max(max_count, int(m.get("max_tile_count", 0)))
        if adaptive_tiles and max_count > tile_capacity:
            new_capacity = grown_tile_capacity(config, max_count)
            if new_capacity > tile_capacity:
                log.info(
                    "fit_scene: %d Gaussians in one tile; tile capacity %d -> %d (recompiling the step)",
                    max_count,
                    tile_capacity,
                    new_capacity,
                )
                tile_capacity = new_capacity
                _, step_fn = _compiled_step_3d(h, w, config, render_fn, lpips_fn, tile_capacity)
        if bar is not None:
            bar.update(len(fetched))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", active=int(jax.device_get(jnp.sum(state.active))))
        pending.clear()
        diverged = int(jax.device_get(state.diverged_at))
        if diverged > 0:
            info = _info()
            if bar is not None:
                bar.close()
            last = Gaussians(active=state.active, **state.params)
            raise FitDivergedError(diverged, last, info)

    def _info():
        return FitInfo(
            losses=np.asarray(losses, np.float32),
            init=init,
            extent=extent,
            densify_events=events,
            saturated=saturated,
            overflow_iterations=overflow_count,
            tile_capacity=tile_capacity,
            num_active=int(jax.device_get(jnp.sum(state.active))),
            seconds=time.perf_counter() - t0,
        )

    for it in range(1, iterations + 1):
        # INRIA raises the degree at the start of iterations 1000, 2000, 3000 (oneupSHdegree before render)
        sh_degree = min(max_sh, it // every_sh) if every_sh > 0 else max_sh
        sched = densify_lib.schedule(it, dc)
        lrs = learning_rates(config.optim, extent, iterations, step=it - 1)
        view = sampler()
        batch = dict(
            views[view],
            sh_degree=jnp.int32(sh_degree),
            loss_weight=jnp.float32(loss_weights[view]),
            learning_rates={name: jnp.float32(lr) for name, lr in lrs.items()},
        )
        state, metrics = step_fn(state, batch, jnp.asarray(sched["accumulate"]))
        pending.append(metrics)
        if sched["densify"] or sched["reset_opacity"]:
            flush()  # never densify a diverged state
            g = Gaussians(active=state.active, **state.params)
            opt_state, stats = state.opt_state, state.stats
            if sched["densify"]:
                g, stats, opt_state, dinfo = densify_lib.densify_and_prune(
                    g,
                    stats,
                    opt_state,
                    jax.random.fold_in(key, it),
                    extent=extent,
                    grad_threshold=float(dc.grad_threshold),
                    percent_dense=float(dc.percent_dense),
                    min_opacity=float(dc.min_opacity),
                    prune_big=bool(sched["prune_big"]),
                    max_screen_size=float(dc.max_screen_size),
                    max_world_size=float(dc.max_world_size),
                    split_scale_divisor=float(dc.split_scale_divisor),
                    reference_radii_reset=bool(dc.reference_radii_reset),
                )
                dinfo = {name: int(x) for name, x in jax.device_get(dinfo).items()}
                events.append({"iteration": it, **dinfo})
                if dinfo["dropped"] > 0 and not saturated:
                    saturated = True
                    log.warning(
                        "fit_scene: capacity %d saturated at iteration %d (%d densification requests refused); "
                        "raise config.capacity for a denser fit",
                        capacity,
                        it,
                        dinfo["dropped"],
                    )
            if sched["reset_opacity"]:
                g, opt_state = densify_lib.reset_opacity(g, opt_state, float(dc.opacity_reset_value))
            state = state.replace(params=gaussian_params(g), active=g.active, opt_state=opt_state, stats=stats)
        if len(pending) >= check_every or it == iterations:
            flush()
    if bar is not None:
        bar.close()
    result = Gaussians(active=state.active, **state.params)
    if overflow_count:
        log.warning(
            "fit_scene: %d of %d renders overflowed a tile's capacity (config.render.tile_capacity)",
            overflow_count,
            iterations,
        )
    if return_info:
        return result, _info()
    return result


__all__ = [
    "FitDivergedError",
    "FitInfo",
    "TrainState",
    "ViewSampler",
    "fit_scene",
    "init_train_state",
    "make_render_loss_3d",
    "make_train_step",
    "scene_extent",
    "sh_band_mask",
]
