"""View planning for lifting: which views to generate, in which groups, with which context views.

GenXD generates F frames per call (12 for the released model); the 3D lifting protocols need more views than
that, so targets are generated group by group, each group with the input (or anchor) views nearest to it as
context. Three pieces:

- :func:`group_targets`: the official grouping of few-view targets (``dataset/reconf_group.py``,
  ``group_strategy="group"``, commit 2c05146), or plain consecutive chunks (``"sequential"``).
- :func:`generate_views`: runs :class:`genxd_jax.pipeline.GenXDPipeline` group by group (tqdm bar with ETA).
- :func:`single_view_plan` / :func:`generate_single_view`: the paper's single-view protocol (Table 6):
  anchor views on an orbit or forward path conditioned on the one input image, then views interpolated
  between the anchors, each group conditioned on the nearest anchors.

Cameras are OpenCV camera-to-world (4, 4); intrinsics (3, 3) normalised by the image size; images (H, W, 3)
float in [0, 1] — the conventions of :mod:`genxd_jax.geometry` and the pipeline.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from genxd_jax.geometry.cameras import CameraError, validate_c2w, validate_intrinsics
from genxd_jax.geometry.trajectories import forward_trajectory, interpolate_poses, orbit_trajectory


@dataclasses.dataclass(frozen=True)
class Group:
    """One generation call: ``target_index`` (T,) into the target cameras, ``context_index`` (V,) into the
    context cameras, nearest to the group's centroid first (the official order)."""

    target_index: np.ndarray
    context_index: np.ndarray


def _farthest_point_sample(points: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """Indices of ``count`` farthest-point samples of points (N, D), starting from ``start`` (PointNet++ FPS,
    as the official ``farthest_point_sample_tensor``; ties go to the lowest index, as ``argmax``)."""
    dist = np.full(len(points), np.inf)
    chosen = np.empty(count, dtype=np.int64)
    current = start
    for i in range(count):
        chosen[i] = current
        dist = np.minimum(dist, np.sum((points - points[current]) ** 2, axis=-1))
        current = int(np.argmax(dist))
    return chosen


def nearest_context(context_centres: np.ndarray, group_centres: np.ndarray, num_context: int) -> np.ndarray:
    """(V,) indices of the ``num_context`` context centres (C, 3) nearest the centroid of group_centres (T, 3),
    nearest first (official ``find_nearest_condition_frames``; stable sort, so ties keep the lower index)."""
    centroid = group_centres.mean(axis=0)
    d = np.linalg.norm(context_centres - centroid, axis=-1)
    return np.argsort(d, kind="stable")[:num_context]


def group_targets(
    context_c2w, target_c2w, frames: int = 12, num_context: int = 3, *, strategy: str = "group"
) -> list[Group]:
    """Splits the targets into groups of T = ``frames`` − V, each with the V context views nearest to it.

    ``strategy="group"`` is the official rule (``reconf_group.py``): farthest-point sampling over the camera
    centres [first context camera, targets...] picks ⌊(G + 1) / T⌋ + 1 anchors, starting from the first
    context camera; each anchor's group is its T nearest targets (so groups may overlap); the context of a
    group is the V context cameras nearest the group's centroid. Two additions the official does not need for
    its spline paths: targets that no group covers get extra groups (themselves, padded with their nearest
    other targets to T), and G < T gives one group of all G targets. ``strategy="sequential"`` cuts the targets
    into consecutive chunks of T (the last chunk is padded with the preceding targets).

    Args:
      context_c2w: (C, 4, 4) input (or anchor) cameras.
      target_c2w: (G, 4, 4) cameras to generate.
      frames: F, frames per generation call (12 for the released model).
      num_context: V, context views per call (lowered to C when there are fewer inputs).

    Returns:
      Groups in generation order. Every target index appears in at least one group.
    """
    ctx = validate_c2w(context_c2w, name="context_c2w")
    tgt = validate_c2w(target_c2w, name="target_c2w")
    if ctx.ndim != 3 or len(ctx) < 1:
        raise CameraError(f"context_c2w must be (C ≥ 1, 4, 4), got {ctx.shape}")
    if tgt.ndim != 3 or len(tgt) < 1:
        raise CameraError(f"target_c2w must be (G ≥ 1, 4, 4), got {tgt.shape}")
    v = min(int(num_context), len(ctx))
    if v < 1 or int(frames) - v < 1:
        raise ValueError(f"frames ({frames}) must exceed the number of context views ({v}), and V ≥ 1")
    t = int(frames) - v
    g = len(tgt)
    cc, tc = ctx[:, :3, 3], tgt[:, :3, 3]
    if g <= t:
        members = [np.arange(g)]
    elif strategy == "sequential":
        members = [np.arange(s, s + t) if s + t <= g else np.arange(g - t, g) for s in range(0, g, t)]
    elif strategy == "group":
        pts = np.concatenate([cc[:1], tc])
        anchors = pts[_farthest_point_sample(pts, len(pts) // t + 1, 0)]
        d = np.linalg.norm(tc[None] - anchors[:, None], axis=-1)  # (A, G)
        members = list(np.argsort(d, axis=1, kind="stable")[:, :t])
        missing = np.setdiff1d(np.arange(g), np.concatenate(members))
        while missing.size:
            seed = missing[:t]
            if seed.size < t:  # pad with the targets nearest the uncovered ones
                d = np.linalg.norm(tc[None] - tc[seed].mean(0)[None, None], axis=-1)[0]
                extra = [i for i in np.argsort(d, kind="stable") if i not in seed][: t - seed.size]
                seed = np.concatenate([seed, extra])
            members.append(seed)
            missing = missing[t:]
    else:
        raise ValueError(f"unknown grouping strategy {strategy!r}; expected 'group' or 'sequential'")
    return [Group(np.asarray(m, np.int64), nearest_context(cc, tc[m], v)) for m in members]


def frame_slots(num_context: int, num_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame slots (context_slots (V,), target_slots (T,)) of one call of F = V + T frames.

    The official ``reconf_group.py`` layouts: V = 1 → context first; V = 2 → first and last; V = 3 → first,
    T//2 + 1 and last (targets fill the rest in order). Other V are spread evenly over the F slots.
    """
    f = num_context + num_targets
    if num_context == 1:
        ctx = [0]
    elif num_context == 2:
        ctx = [0, f - 1]
    elif num_context == 3:
        ctx = [0, num_targets // 2 + 1, f - 1]
    else:
        ctx = sorted({int(i) for i in np.round(np.linspace(0, f - 1, num_context))})
    ctx = np.asarray(ctx, np.int64)
    return ctx, np.setdiff1d(np.arange(f), ctx)


def _intrinsics_per_view(intrinsics, count: int, name: str) -> np.ndarray:
    k = validate_intrinsics(np.asarray(intrinsics, np.float64), name=name)
    if k.ndim == 2:
        return np.broadcast_to(k, (count, 3, 3))
    if k.shape != (count, 3, 3):
        raise CameraError(f"{name} has shape {k.shape}; expected (3, 3) or ({count}, 3, 3)")
    return k


def generate_views(
    pipe,
    context_images,
    context_c2w,
    target_c2w,
    intrinsics,
    *,
    frames: int = 12,
    num_context: int = 3,
    target_intrinsics=None,
    num_inference_steps: int = 25,
    guidance_scale: float = 3.0,
    indicator: int = 0,
    motion_strength: float = 0.0,
    seed: int = 0,
    strategy: str = "group",
    normalise_scale: bool = False,
    progress: bool = True,
    desc: str = "generating",
) -> np.ndarray:
    """Generates an image at every target camera, group by group (:func:`group_targets`).

    Each group is one pipeline call of F = V + T frames: the V nearest context images in the official frame
    slots (:func:`frame_slots`), the T targets in the rest. A target in several groups keeps its first
    generation. Group i draws its noise from ``jax.random.fold_in(jax.random.key(seed), i)``.

    Args:
      pipe: a :class:`genxd_jax.pipeline.GenXDPipeline`.
      context_images: (C, H, W, 3) in [0, 1]; H, W a multiple of the model's size multiple.
      context_c2w: (C, 4, 4) OpenCV c2w of the context images.
      target_c2w: (G, 4, 4) cameras to generate.
      intrinsics: normalised (3, 3) shared, or (C, 3, 3) for the context views.
      target_intrinsics: (3, 3) or (G, 3, 3); default the first context view's.
      frames, num_context: F and V per call.
      indicator, motion_strength: 0 and 0 (3D, the official few-view setting).
      normalise_scale: rescale each call's camera translations so that, relative to its first context
        camera, the farthest camera is at distance 1 (the training normalisation of
        :func:`genxd_jax.data.cameras.normalise_poses`; use it with models trained by this repository; the
        released model was run on raw poses by the official few-view code).
      progress: a tqdm bar over the groups (the first group also compiles the sampler).

    Returns:
      (G, H, W, 3) float32 in [0, 1].
    """
    import jax
    from tqdm import tqdm

    from genxd_jax.data.cameras import normalise_poses

    images = np.asarray(context_images, np.float32)
    ctx = validate_c2w(context_c2w, name="context_c2w")
    tgt = validate_c2w(target_c2w, name="target_c2w")
    if images.ndim != 4 or images.shape[0] != len(ctx):
        raise ValueError(f"context_images {images.shape} must be (C, H, W, 3) with C = {len(ctx)} cameras")
    k_ctx = _intrinsics_per_view(intrinsics, len(ctx), "intrinsics")
    k_tgt = _intrinsics_per_view(k_ctx[0] if target_intrinsics is None else target_intrinsics, len(tgt),
                                 "target_intrinsics")
    groups = group_targets(ctx, tgt, frames, num_context, strategy=strategy)
    out = np.zeros((len(tgt), *images.shape[1:3], 3), np.float32)
    done = np.zeros(len(tgt), bool)
    key = jax.random.key(seed)
    if progress:
        print(f"GenXD: {len(tgt)} views in {len(groups)} group(s) of ≤ {frames} frames "
              "(the first group compiles the sampler)", file=sys.stderr)
    start = time.perf_counter()
    with tqdm(total=len(groups), desc=desc, unit="group", disable=not progress) as bar:
        for i, group in enumerate(groups):
            cs, ts = frame_slots(len(group.context_index), len(group.target_index))
            f = len(cs) + len(ts)
            c2w = np.zeros((f, 4, 4))
            k = np.zeros((f, 3, 3))
            c2w[cs], k[cs] = ctx[group.context_index], k_ctx[group.context_index]
            c2w[ts], k[ts] = tgt[group.target_index], k_tgt[group.target_index]
            if normalise_scale:
                c2w, _ = normalise_poses(c2w, int(cs[0]))
            result = pipe(images[group.context_index], cs, c2w, k, num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, indicator=indicator, motion_strength=motion_strength,
                          rng=jax.random.fold_in(key, i))
            fresh = ~done[group.target_index]
            out[group.target_index[fresh]] = result[ts][fresh]
            done[group.target_index] = True
            bar.update(1)
    if progress:
        print(f"generated {len(tgt)} views in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------------------------------------
# Single view.


@dataclasses.dataclass(frozen=True)
class SingleViewPlan:
    """Cameras of the single-view protocol. ``anchor_c2w`` (F, 4, 4): slot 0 is the input view, the other
    F − 1 are generated in one call conditioned on it; ``interp_c2w`` (M, 4, 4): the views between anchors,
    generated afterwards in groups conditioned on the nearest anchors. ``all_c2w`` = anchors then interps."""

    anchor_c2w: np.ndarray
    interp_c2w: np.ndarray

    @property
    def all_c2w(self) -> np.ndarray:
        return np.concatenate([self.anchor_c2w, self.interp_c2w])


def single_view_plan(
    frames: int = 12,
    *,
    camera: str = "orbit",
    per_segment: int = 1,
    elevation: float = 0.0,
    azimuth_range=None,
    radius: float = 2.0,
) -> SingleViewPlan:
    """Anchor cameras (the input at slot 0) and ``per_segment`` views between each pair of neighbouring
    anchors.

    ``camera="orbit"``: F anchors on a full orbit (:func:`orbit_trajectory`, default azimuths 0–360°); the
    interpolated views are the orbit's intermediate azimuths (same elevation and radius), so the final set is
    an orbit of F·(per_segment + 1) evenly spaced views. ``camera="forward"``: the official forward-facing
    sweep (:func:`forward_trajectory`, default ±30°, F a multiple of 4); the views between neighbouring
    anchors (in path order, closed) are slerp / linear interpolations (:func:`interpolate_poses`).
    """
    f = int(frames)
    if f < 2:
        raise ValueError(f"single-view planning needs at least 2 frames per call, got {frames}")
    if per_segment < 0:
        raise ValueError(f"per_segment must be ≥ 0, got {per_segment}")
    if camera == "orbit":
        az = (0.0, 360.0) if azimuth_range is None else tuple(azimuth_range)
        dense = orbit_trajectory(f * (per_segment + 1), elevation, az, radius)
        anchor_idx = np.arange(0, len(dense), per_segment + 1)
        interp = np.setdiff1d(np.arange(len(dense)), anchor_idx)
        return SingleViewPlan(dense[anchor_idx], dense[interp])
    if camera == "forward":
        az = (-30.0, 30.0) if azimuth_range is None else tuple(azimuth_range)
        anchors = forward_trajectory(f, elevation, az, radius)
        mids = []
        for j in range(f):
            pair = np.stack([anchors[j], anchors[(j + 1) % f]])
            if per_segment:
                mids.append(interpolate_poses(pair, per_segment + 2)[1:-1])
        interp = np.concatenate(mids) if mids else np.zeros((0, 4, 4))
        return SingleViewPlan(anchors, interp)
    raise ValueError(f"unknown single-view camera {camera!r}; expected 'orbit' or 'forward'")


def generate_single_view(
    pipe,
    image,
    intrinsics,
    plan: SingleViewPlan,
    *,
    num_context: int = 3,
    num_inference_steps: int = 25,
    guidance_scale: float = 3.0,
    seed: int = 0,
    normalise_scale: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the single-view protocol: returns (images (N, H, W, 3), c2w (N, 4, 4)) for N = len(plan.all_c2w).

    1. One call of F = len(anchor_c2w) frames, the input image in slot 0 of the anchor path (3D mode).
    2. The interpolated views by :func:`generate_views`, with the input and the generated anchors as context
       (V = ``num_context`` nearest per group, F frames per call).
    Image 0 is the input itself (not its VAE reconstruction).
    """
    import jax

    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    k = validate_intrinsics(np.asarray(intrinsics, np.float64))
    f = len(plan.anchor_c2w)
    if progress:
        print(f"GenXD single view: {f - 1} anchor views, then {len(plan.interp_c2w)} interpolated views",
              file=sys.stderr)
    anchor_c2w = _normalised(plan.anchor_c2w, 0) if normalise_scale else plan.anchor_c2w
    anchors = pipe(image[None], [0], anchor_c2w, k, num_inference_steps=num_inference_steps,
                   guidance_scale=guidance_scale, indicator=0, motion_strength=0.0, rng=jax.random.key(seed))
    anchors = np.asarray(anchors, np.float32).copy()
    anchors[0] = image
    if len(plan.interp_c2w) == 0:
        return anchors, plan.anchor_c2w
    interp = generate_views(pipe, anchors, plan.anchor_c2w, plan.interp_c2w, k, frames=f,
                            num_context=num_context, num_inference_steps=num_inference_steps,
                            guidance_scale=guidance_scale, seed=seed + 1, normalise_scale=normalise_scale,
                            progress=progress, desc="interpolating")
    return np.concatenate([anchors, interp]), plan.all_c2w


def _normalised(c2w: np.ndarray, ref: int) -> np.ndarray:
    from genxd_jax.data.cameras import normalise_poses

    return normalise_poses(c2w, ref)[0]
