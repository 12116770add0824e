"""Dynamic scenes from monocular clips: 4D Gaussian splatting with a HexPlane deformation field (4DGaussians).

:func:`fit_dynamic_scene` fits, to frames (T, H, W, 3) with one camera and one time per frame (GenXD's 4D
clips: the camera orbits while time runs; no point cloud, no masks):

1. **coarse stage** — a static 3D-GS (:func:`genxd_jax.lift.fit_scene`, config ``config.coarse``, random initial
   points in the common frustum) on all frames, as the reference's 3000 "coarse" iterations;
2. **fine stage** — the canonical Gaussians deformed per frame by a HexPlane field + MLP heads
   (:mod:`genxd_jax.lift.hexplane`, :mod:`genxd_jax.lift.deform`) evaluated at the frame's time; Gaussians,
   planes and MLP trained jointly by Adam (per-group rates, :mod:`genxd_jax.lift.fit4d_config`), loss
   (1 − λ)·L1 + λ·D-SSIM (λ = 0 as the reference) + w_tv·plane smoothness + w_ts·time smoothness +
   w_l1·|1 − time planes|. The HexPlane box is the canonical Gaussians' bounding box after the coarse stage.
   One frame per iteration, a fresh random permutation per epoch (reference batch size 1). The rasteriser is
   :func:`genxd_jax.lift.render`, unchanged. Densification is not run in the fine stage (optional in the
   reference; the capacity is fixed by then).

Why a fine-stage training step of its own rather than :func:`genxd_jax.lift.fit.make_train_step`: that step
masks every parameter leaf whose leading dimension equals the capacity N (to keep inactive slots frozen),
which would silently corrupt HexPlane or MLP arrays that happen to have N rows. This one masks only the
Gaussian fields; it reuses the 3D pieces otherwise (``photometric_loss``, ``adam_for``, ``set_learning_rates``,
``learning_rates``, ``ViewSampler``, ``sh_band_mask``, ``scene_extent``).

:class:`DynamicScene` holds the result; :func:`render_at` renders it at any continuous time t ∈ [0, 1];
``DynamicScene.save(dir)`` writes ``canonical.ply`` (standard INRIA 3D-GS layout), ``deformation.safetensors``
(planes, MLP, box; plain tensors, no pickle), ``deformation.json`` (the shapes and the training times) and
``times/time_XXX.ply`` (the deformed Gaussians at each exported time, standard layout, so any splat viewer
plays them); :meth:`DynamicScene.load` reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from genxd_jax.geometry import broadcast_intrinsics, validate_c2w
from genxd_jax.lift.deform import check_mlp, deform_gaussians, init_deform_mlp, zero_heads
from genxd_jax.lift.fit import FitDivergedError, ViewSampler, fit_scene, scene_extent, sh_band_mask
from genxd_jax.lift.fit4d_config import get_config
from genxd_jax.lift.gaussians import PARAM_FIELDS, Gaussians
from genxd_jax.lift.hexplane import HexPlaneSpec, aabb_from_points, check_grids, init_hexplane, regularization
from genxd_jax.lift.losses import photometric_loss
from genxd_jax.lift.optim import adam_for, learning_rates, set_learning_rates
from genxd_jax.lift.render import RenderOutput, render

log = logging.getLogger(__name__)

FORMAT = "genxd_jax.lift4d"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# The dynamic scene.


_deform_jit = jax.jit(deform_gaussians)


@struct.dataclass
class DynamicScene:
    """Canonical Gaussians + a HexPlane deformation field (a JAX pytree).

    canonical: :class:`Gaussians` (capacity N); grids: list (one per scale) of {plane: (C, R_b, R_a)};
    mlp: the deformation MLP (:mod:`genxd_jax.lift.deform`); aabb (2, 3): the HexPlane box (min, max corners,
    world units); times (T,): the training times in [0, 1] (what :meth:`save` exports by default);
    spec: the static :class:`HexPlaneSpec`.
    """

    canonical: Gaussians
    grids: list
    mlp: dict
    aabb: jax.Array
    times: jax.Array
    spec: HexPlaneSpec = struct.field(pytree_node=False)

    def at(self, t) -> Gaussians:
        """The Gaussians deformed to time ``t`` (scalar in [0, 1]; jitted, one program per capacity)."""
        return _deform_jit(self.canonical, self.grids, self.mlp, self.aabb, jnp.asarray(t, jnp.float32))

    # ------------------------------------------------------------------ files
    def save(self, directory, *, times=None, overwrite: bool = False) -> pathlib.Path:
        """Writes the scene to ``directory`` atomically (a temporary folder renamed at the end).

        Files: ``canonical.ply``, ``deformation.safetensors``, ``deformation.json`` and
        ``times/time_XXX.ply`` for each exported time (default: the training times; ``times=[]`` for none).
        Raises FileExistsError when ``directory`` exists and ``overwrite`` is False.
        """
        from safetensors.numpy import save_file

        from genxd_jax.lift.ply import save_ply

        out = pathlib.Path(directory).resolve()
        if out.exists() and not overwrite:
            raise FileExistsError(f"DynamicScene.save: {out} exists (pass overwrite=True to replace it)")
        export = np.asarray(self.times if times is None else times, np.float64).reshape(-1)
        _check_times(export, "DynamicScene.save: times", min_count=0)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            save_ply(self.canonical, tmp / "canonical.ply")
            save_file(_flatten(self), str(tmp / "deformation.safetensors"))
            files = []
            if len(export):
                (tmp / "times").mkdir()
            for i, t in enumerate(export):
                name = f"times/time_{i:03d}.ply"
                save_ply(self.at(jnp.float32(t)), tmp / name)
                files.append({"t": float(t), "file": name})
            meta = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "hexplane": self.spec.to_dict(),
                "mlp_width": int(np.shape(self.mlp["feature"]["w"])[1]),
                "aabb": np.asarray(self.aabb).tolist(),
                "times": np.asarray(self.times).tolist(),
                "exported": files,
                "conventions": "OpenCV camera-to-world; t in [0, 1]; ply: INRIA 3D-GS layout",
            }
            (tmp / "deformation.json").write_text(json.dumps(meta, indent=1))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, directory) -> "DynamicScene":
        """Reads a folder written by :meth:`save` (ValueError naming the file on anything malformed)."""
        from safetensors.numpy import load_file

        from genxd_jax.lift.ply import load_ply

        d = pathlib.Path(directory)
        for name in ("canonical.ply", "deformation.safetensors", "deformation.json"):
            if not (d / name).is_file():
                raise ValueError(f"DynamicScene.load: {d / name} not found (expected a folder written by save)")
        try:
            meta = json.loads((d / "deformation.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"DynamicScene.load: cannot read {d / 'deformation.json'}: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"DynamicScene.load: {d / 'deformation.json'} is not a {FORMAT} file")
        if int(meta.get("version", -1)) != FORMAT_VERSION:
            raise ValueError(f"DynamicScene.load: {d / 'deformation.json'}: unsupported version {meta.get('version')}")
        try:
            spec = HexPlaneSpec(**meta["hexplane"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"DynamicScene.load: {d / 'deformation.json'}: bad 'hexplane' entry: {e}") from e
        try:
            tensors = load_file(str(d / "deformation.safetensors"))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"DynamicScene.load: cannot read {d / 'deformation.safetensors'}: {e}") from e
        try:
            grids, mlp, aabb, times = _unflatten(tensors, spec)
            check_grids(grids, spec, what=str(d / "deformation.safetensors"))
            check_mlp(mlp, spec, what=str(d / "deformation.safetensors"))
        except KeyError as e:
            raise ValueError(f"DynamicScene.load: {d / 'deformation.safetensors'} lacks tensor {e}") from e
        canonical = load_ply(d / "canonical.ply")
        return cls(canonical=canonical, grids=grids, mlp=mlp, aabb=aabb, times=times, spec=spec)


def _flatten(d: DynamicScene) -> dict:
    out = {"aabb": np.asarray(d.aabb, np.float32), "times": np.asarray(d.times, np.float32)}
    for s, planes in enumerate(d.grids):
        for name, arr in planes.items():
            out[f"grids.{s}.{name}"] = np.asarray(arr, np.float32)
    out["mlp.feature.w"] = np.asarray(d.mlp["feature"]["w"], np.float32)
    out["mlp.feature.b"] = np.asarray(d.mlp["feature"]["b"], np.float32)
    for head in ("pos", "scale", "rot"):
        for i, layer in enumerate(d.mlp[head]):
            out[f"mlp.{head}.{i}.w"] = np.asarray(layer["w"], np.float32)
            out[f"mlp.{head}.{i}.b"] = np.asarray(layer["b"], np.float32)
    return out


def _unflatten(t: dict, spec: HexPlaneSpec):
    from genxd_jax.lift.hexplane import PLANES

    grids = [{name: jnp.asarray(t[f"grids.{s}.{name}"]) for name in PLANES} for s in range(len(spec.multires))]
    mlp = {"feature": {"w": jnp.asarray(t["mlp.feature.w"]), "b": jnp.asarray(t["mlp.feature.b"])}}
    for head in ("pos", "scale", "rot"):
        mlp[head] = [{"w": jnp.asarray(t[f"mlp.{head}.{i}.w"]), "b": jnp.asarray(t[f"mlp.{head}.{i}.b"])}
                     for i in range(2)]
    aabb = jnp.asarray(t["aabb"])
    if aabb.shape != (2, 3):
        raise ValueError(f"aabb has shape {aabb.shape}, expected (2, 3)")
    return grids, mlp, aabb, jnp.asarray(t["times"])


@functools.partial(
    jax.jit, static_argnames=("height", "width", "sh_degree", "tile_capacity", "chunk_size", "rasterizer")
)
def _render_at(d, t, c2w, intrinsics, height, width, background, sh_degree, tile_capacity, chunk_size, rasterizer):
    g = d.at(jnp.asarray(t, jnp.float32))
    kw = {} if tile_capacity is None else {"tile_capacity": tile_capacity}
    if chunk_size is not None:
        kw["chunk_size"] = chunk_size
    return render(g, c2w, intrinsics, height, width, background, sh_degree=sh_degree, rasterizer=rasterizer, **kw)


def render_at(d: DynamicScene, t, c2w, intrinsics, height: int, width: int, background=(0.0, 0.0, 0.0), *,
              sh_degree: int = 3, tile_capacity: int | None = None, chunk_size: int | None = None,
              rasterizer: str = "tiled") -> RenderOutput:
    """Renders the dynamic scene ``d`` at continuous time ``t`` ∈ [0, 1] from one camera.

    ``c2w`` (4, 4) OpenCV camera-to-world, ``intrinsics`` (3, 3) normalised by the image size; ``height``,
    ``width`` in pixels (static). Returns :class:`genxd_jax.lift.render.RenderOutput` as
    :func:`genxd_jax.lift.render` (rgb (H, W, 3), alpha, unnormalised depth ΣzαT, radii, means2d, overflow),
    with a black background unless ``background`` is given. Times outside [0, 1] are accepted but extrapolate
    (the time planes clamp at their border). ``tile_capacity`` defaults to the fit's: the capacity rounded up
    to the chunk, at most 4096 (``overflow`` reports drops). Jitted per image size.
    """
    if not (isinstance(height, int) and isinstance(width, int)) or height <= 0 or width <= 0:
        raise ValueError(f"render_at: height and width must be positive ints, got {height!r}, {width!r}")
    bg = jnp.asarray(background, jnp.float32)
    if bg.shape != (3,):
        raise ValueError(f"render_at: background must have 3 values, got shape {bg.shape}")
    if tile_capacity is None:  # as the fit: every slot fits one tile, up to 4096
        chunk = 32 if chunk_size is None else int(chunk_size)
        tile_capacity = min(-(-int(d.canonical.capacity) // chunk) * chunk, 4096)
    return _render_at(d, t, jnp.asarray(c2w, jnp.float32), jnp.asarray(intrinsics, jnp.float32), height, width,
                      bg, sh_degree, tile_capacity, chunk_size, rasterizer)


# ----------------------------------------------------------------------------------------------------------
# Fitting.


@dataclasses.dataclass
class FitInfo4D:
    """What happened in a 4D fit: ``coarse`` (the 3D :class:`genxd_jax.lift.fit.FitInfo`), ``losses`` (fine
    stage, per iteration), ``extent``, ``aabb``, ``seconds_coarse``, ``seconds_fine`` (compile included),
    ``overflow_iterations`` (fine renders that overflowed a tile)."""

    coarse: object
    losses: np.ndarray
    extent: float
    aabb: np.ndarray
    seconds_coarse: float
    seconds_fine: float
    overflow_iterations: int


def _check_times(times, what: str, *, min_count: int = 2) -> np.ndarray:
    t = np.asarray(times, np.float64)
    if t.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of times, got shape {t.shape}")
    if len(t) < min_count:
        raise ValueError(f"{what}: at least {min_count} times are needed for a dynamic scene, got {len(t)}")
    if not np.all(np.isfinite(t)) or (len(t) and (t.min() < 0.0 or t.max() > 1.0)):
        bad = t[~(np.isfinite(t) & (t >= 0) & (t <= 1))]
        raise ValueError(f"{what} must lie in [0, 1]; got {bad[:5].tolist()}")
    return t


def check_clip(frames, c2w, intrinsics, times):
    """Validates a monocular clip; returns (frames float32 (T, H, W, 3), c2w (T, 4, 4), k (T, 3, 3), times)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"fit_dynamic_scene: frames must have shape (T, H, W, 3), got {frames.shape}")
    frames = frames.astype(np.float32)
    if not np.all(np.isfinite(frames)) or frames.min() < -1e-3 or frames.max() > 1.0 + 1e-3:
        raise ValueError("fit_dynamic_scene: frames must be finite and in [0, 1]")
    n = frames.shape[0]
    times = _check_times(times, "fit_dynamic_scene: times")
    if times.shape != (n,):
        raise ValueError(f"fit_dynamic_scene: {len(times)} times for {n} frames (one time per frame)")
    c2w = validate_c2w(c2w, name="fit_dynamic_scene: c2w")
    if c2w.shape != (n, 4, 4):
        raise ValueError(f"fit_dynamic_scene: c2w must have shape ({n}, 4, 4) (one camera per frame), got {c2w.shape}")
    k = broadcast_intrinsics(intrinsics, n)
    return np.clip(frames, 0.0, 1.0), c2w, k, times


def spec_from_config(config) -> HexPlaneSpec:
    h = config.hexplane
    return HexPlaneSpec(channels=int(h.channels), resolution=tuple(h.resolution), multires=tuple(h.multires))


def _render_kwargs(coarse_config) -> dict:
    kw = dict(coarse_config.render) if "render" in coarse_config else {}
    if int(kw.get("tile_capacity", 1) or 0) <= 0:  # auto, as the 3D fit
        chunk = int(kw.get("chunk_size", 32))
        kw["tile_capacity"] = min(-(-int(coarse_config.capacity) // chunk) * chunk, 4096)
    return kw


def make_optimizer_4d(config) -> optax.GradientTransformation:
    """Adam per Gaussian field + "deformation" (the MLP) + "grid" (the planes); learning rates injected."""
    transforms = {name: adam_for(config.coarse.optim, 1.0) for name in (*PARAM_FIELDS, "deformation", "grid")}

    def labels(params):
        return {
            "gaussians": {f: f for f in params["gaussians"]},
            "grid": jax.tree_util.tree_map(lambda _: "grid", params["grid"]),
            "mlp": jax.tree_util.tree_map(lambda _: "deformation", params["mlp"]),
        }

    return optax.multi_transform(transforms, labels)


def fine_learning_rates(config, extent: float, iterations: int, step: int) -> dict:
    """Per-group learning rates of fine-stage step ``step`` (0-based): the 3D Gaussian rates
    (:func:`genxd_jax.lift.optim.learning_rates`, over the fine stage) + "deformation" and "grid" (× extent)."""
    o = config.optim
    max_steps = int(o.lr_max_steps) or int(iterations)
    frac = min(max(step / max_steps, 0.0), 1.0)

    def expon(a, b):
        return float(np.exp((1 - frac) * np.log(a * extent) + frac * np.log(b * extent)))

    rates = learning_rates(config.coarse.optim, extent, iterations, step=step)
    rates["deformation"] = expon(float(o.deformation_lr_init), float(o.deformation_lr_final))
    rates["grid"] = expon(float(o.grid_lr_init), float(o.grid_lr_final))
    return rates


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def make_fine_step(config, height: int, width: int):
    """(optimizer, jitted ``step(params, active, opt_state, batch) -> (params, opt_state, metrics)``).

    ``params`` = {"gaussians": Gaussian fields, "grid": planes, "mlp": MLP}; ``batch`` = {"images" (T, H, W, 3),
    "c2w" (T, 4, 4), "intrinsics" (T, 3, 3), "times" (T,), "aabb" (2, 3), "view" int32, "sh_degree" int32,
    "learning_rates" {group: lr}}. A non-finite loss or gradient leaves params and optimiser state unchanged
    and reports ``finite`` False. Inactive Gaussian slots are never changed.
    """
    coarse = config.coarse
    background = tuple(float(x) for x in coarse.background)
    max_sh = int(coarse.max_sh_degree)
    lam = float(config.loss.lambda_dssim)
    weights = dict(plane_tv_weight=float(config.loss.plane_tv_weight),
                   time_smoothness_weight=float(config.loss.time_smoothness_weight),
                   time_l1_weight=float(config.loss.time_l1_weight))
    render_kwargs = _render_kwargs(coarse)
    optimizer = make_optimizer_4d(config)

    def loss_fn(params, active, batch):
        g = Gaussians(active=active, **params["gaussians"])
        g = g.replace(sh_rest=g.sh_rest * sh_band_mask(batch["sh_degree"]))
        v = batch["view"]
        gd = deform_gaussians(g, params["grid"], params["mlp"], batch["aabb"], batch["times"][v])
        out = render(gd, batch["c2w"][v], batch["intrinsics"][v], height, width, background, sh_degree=max_sh,
                     **render_kwargs)
        photo, terms = photometric_loss(out.rgb, batch["images"][v], lambda_dssim=lam)
        reg = regularization(params["grid"], **weights)
        return photo + reg, {"l1": terms["l1"], "reg": reg, "overflow": out.overflow}

    def step(params, active, opt_state, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, active, batch)
        finite = jnp.isfinite(loss) & _all_finite(grads)
        opt_state_lr = set_learning_rates(opt_state, batch["learning_rates"])
        updates, new_opt = optimizer.update(grads, opt_state_lr, params)
        new = optax.apply_updates(params, updates)
        n = active.shape[0]
        new["gaussians"] = {
            k: jnp.where(active.reshape((n,) + (1,) * (x.ndim - 1)), x, params["gaussians"][k])
            for k, x in new["gaussians"].items()
        }
        keep = lambda a, b: jnp.where(finite, a, b)  # noqa: E731
        new = jax.tree_util.tree_map(keep, new, params)
        new_opt = jax.tree_util.tree_map(keep, new_opt, opt_state)
        return new, new_opt, {"loss": loss, "finite": finite, **aux}

    return optimizer, jax.jit(step)


_FINE_CACHE: dict = {}


def _cached_fine_step(config, height: int, width: int):
    """One compiled fine step per (image size, config) for the life of the process (tests, repeated fits)."""
    c = config.coarse
    # Learning rates are injected per step and the initialisation is outside the step, so only these matter.
    key = (
        int(height), int(width), config.loss.to_json_best_effort(sort_keys=True),
        c.render.to_json_best_effort(sort_keys=True) if "render" in c else "",
        tuple(float(x) for x in c.background), int(c.max_sh_degree), int(c.capacity),
        tuple(float(c.optim[k]) for k in ("adam_b1", "adam_b2", "adam_eps")),
    )
    if key not in _FINE_CACHE:
        _FINE_CACHE[key] = make_fine_step(config, height, width)
    return _FINE_CACHE[key]


def fit_dynamic_scene(
    frames,
    c2w,
    intrinsics,
    times,
    iterations: int | None = None,
    seed: int = 0,
    *,
    coarse_iterations: int | None = None,
    config=None,
    init_points=None,
    progress: bool = True,
    return_info: bool = False,
):
    """Fits a dynamic scene (canonical 3D Gaussians + HexPlane deformation) to a monocular clip.

    Args:
      frames: (T, H, W, 3) in [0, 1], one frame per time.
      c2w: (T, 4, 4) OpenCV camera-to-world, one camera per frame.
      intrinsics: (3, 3) or (T, 3, 3), normalised by the image width/height.
      times: (T,) in [0, 1] (at least 2).
      iterations: fine-stage iterations (None: ``config.iterations``).
      seed: seeds the random initial points, the frame order and the HexPlane/MLP initialisation.
      coarse_iterations: static stage iterations (None: ``config.coarse_iterations``); 0 skips the coarse
        stage, which then needs ``init_points`` as :class:`Gaussians`.
      config: a :mod:`genxd_jax.lift.fit4d_config` ConfigDict (default ``get_config("object")``).
      init_points: passed to the coarse :func:`genxd_jax.lift.fit_scene` (None: random points in the frustum;
        a :class:`Gaussians` continues from them).
      progress: tqdm bars with ETA for both stages.
      return_info: also return a :class:`FitInfo4D`.
    Returns :class:`DynamicScene` (or ``(scene, info)``). Raises ValueError for bad input and
    :class:`genxd_jax.lift.fit.FitDivergedError` (``last_good`` = the canonical Gaussians) if the loss turns
    non-finite.
    """
    config = get_config("object") if config is None else config
    iterations = int(config.iterations if iterations is None else iterations)
    coarse_its = int(config.coarse_iterations if coarse_iterations is None else coarse_iterations)
    if iterations < 1 or coarse_its < 0:
        raise ValueError(f"fit_dynamic_scene: need iterations >= 1 and coarse_iterations >= 0, got "
                         f"{iterations}, {coarse_its}")
    frames, c2w, k, times = check_clip(frames, c2w, intrinsics, times)
    n_frames, h, w, _ = frames.shape
    capacity = int(config.coarse.capacity)

    # ---- coarse: static 3D-GS on every frame
    t0 = time.perf_counter()
    coarse_info = None
    if coarse_its > 0:
        g, coarse_info = fit_scene(frames, c2w, k, iterations=coarse_its, seed=seed, config=config.coarse,
                                   init_points=init_points, progress=progress, return_info=True)
        extent = coarse_info.extent
    else:
        if not isinstance(init_points, Gaussians):
            raise ValueError("fit_dynamic_scene: coarse_iterations=0 needs init_points as Gaussians")
        g = init_points.validate()
        if g.capacity > capacity:
            raise ValueError(f"fit_dynamic_scene: init Gaussians have {g.capacity} slots > capacity {capacity}")
        g = g.pad_to(capacity)
        extent = scene_extent(c2w, np.asarray(g.means)[np.asarray(g.active)])
    seconds_coarse = time.perf_counter() - t0

    # ---- fine: deformation field
    t1 = time.perf_counter()
    spec = spec_from_config(config)
    active_means = np.asarray(g.means)[np.asarray(g.active)]
    if len(active_means) == 0:
        raise ValueError("fit_dynamic_scene: the coarse stage left no active Gaussians (all pruned)")
    aabb = aabb_from_points(active_means, float(config.hexplane.aabb_margin))
    key = jax.random.PRNGKey(seed)
    k_grid, k_mlp = jax.random.split(jax.random.fold_in(key, 4))
    grids = init_hexplane(k_grid, spec)
    mlp = init_deform_mlp(k_mlp, spec.feature_dim, int(config.deform.width))
    if bool(config.deform.zero_init_heads):
        mlp = zero_heads(mlp)
    optimizer, step_fn = _cached_fine_step(config, h, w)
    params = {"gaussians": g.params(), "grid": grids, "mlp": mlp}
    opt_state = optimizer.init(params)
    data = {
        "images": jnp.asarray(frames),
        "c2w": jnp.asarray(c2w, jnp.float32),
        "intrinsics": jnp.asarray(k, jnp.float32),
        "times": jnp.asarray(times, jnp.float32),
        "aabb": jnp.asarray(aabb),
    }
    sampler = ViewSampler(n_frames, seed + 1)
    max_sh = int(config.coarse.max_sh_degree)
    every_sh = int(config.coarse.sh_increase_every)
    check_every = max(1, int(config.check_every))
    losses: list = []
    pending: list = []
    overflow = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=iterations, desc="fit 4D deformation", unit="it", disable=not progress)

    def flush():
        nonlocal overflow
        if not pending:
            return
        fetched = jax.device_get(pending)
        pending.clear()
        for i, m in fetched:
            if not bool(m["finite"]):
                bar.close()
                raise FitDivergedError(coarse_its + i, Gaussians(active=g.active, **params["gaussians"]))
            losses.append(float(m["loss"]))
            overflow += int(bool(m["overflow"]))
        bar.update(len(fetched))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")

    for it in range(1, iterations + 1):
        total_it = coarse_its + it
        sh_degree = min(max_sh, total_it // every_sh) if every_sh > 0 else max_sh
        lrs = fine_learning_rates(config, extent, iterations, it - 1)
        batch = dict(data, view=jnp.int32(sampler()), sh_degree=jnp.int32(sh_degree),
                     learning_rates={name: jnp.float32(lr) for name, lr in lrs.items()})
        params, opt_state, metrics = step_fn(params, g.active, opt_state, batch)
        pending.append((it, metrics))
        if len(pending) >= check_every or it == iterations:
            flush()
    bar.close()
    if overflow:
        log.warning("fit_dynamic_scene: %d of %d fine renders overflowed a tile's capacity", overflow, iterations)
    scene = DynamicScene(
        canonical=Gaussians(active=g.active, **params["gaussians"]),
        grids=params["grid"], mlp=params["mlp"], aabb=jnp.asarray(aabb), times=jnp.asarray(times, jnp.float32),
        spec=spec,
    )
    if return_info:
        info = FitInfo4D(coarse=coarse_info, losses=np.asarray(losses, np.float32), extent=float(extent),
                         aabb=aabb, seconds_coarse=seconds_coarse, seconds_fine=time.perf_counter() - t1,
                         overflow_iterations=overflow)
        return scene, info
    return scene


__all__ = [
    "DynamicScene", "FitInfo4D", "check_clip", "fine_learning_rates", "fit_dynamic_scene", "make_fine_step",
    "make_optimizer_4d", "render_at", "spec_from_config",
]
