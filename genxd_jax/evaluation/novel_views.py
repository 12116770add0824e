"""Novel-view evaluation on held-out scenes: generate the target views and score them against ground truth.

Used by the training loop's periodic evaluation (``config.eval``) and by ``notebooks/evaluate.ipynb``.

A *scene* is an example dict as made by :func:`genxd_jax.data.make_eval_scenes` (no batch axis):

    images          (F, S, S, 3) float32 in [0, 1]   ground truth of every frame
    c2w             (F, 4, 4)                        OpenCV camera-to-world
    intrinsics      (F, 3, 3)                        normalised
    context_mask    (F,) bool                        the conditioning frames (≥ 1, ≤ F − 1)
    indicator       ()                               0 = 3D, 1 = video, 2 = 4D
    motion_strength ()

Scores are computed over the target (non-context) frames only. The reference point is the
*copy-the-nearest-context-view* baseline: every target frame is predicted by the context image whose camera
centre is nearest (ties go to the earlier frame) — what a model that ignores the camera would do at best
without inventing content.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from genxd_jax.evaluation.image_metrics import evaluate_views


def nearest_context_index(c2w: np.ndarray, context_mask: np.ndarray) -> np.ndarray:
    """(F,) the frame index of the context view nearest (camera centre, Euclidean) to each frame."""
    c2w = np.asarray(c2w, np.float64)
    mask = np.asarray(context_mask, bool)
    if not mask.any():
        raise ValueError("context_mask selects no context frame")
    context = np.flatnonzero(mask)
    centres = c2w[:, :3, 3]
    dist = np.linalg.norm(centres[:, None, :] - centres[None, context, :], axis=-1)  # (F, V)
    return context[np.argmin(dist, axis=1)]


def copy_nearest_baseline(images: np.ndarray, c2w: np.ndarray, context_mask: np.ndarray) -> np.ndarray:
    """(F, H, W, 3): every frame replaced by its nearest context view (context frames stay themselves)."""
    return np.asarray(images)[nearest_context_index(c2w, context_mask)]


def generate_views(pipeline, scene: dict, *, num_inference_steps: int, guidance_scale: float, rng) -> np.ndarray:
    """Samples all F frames of ``scene`` from its context views: (F, S, S, 3) float32 in [0, 1]."""
    mask = np.asarray(scene["context_mask"], bool)
    context_index = np.flatnonzero(mask)
    return pipeline(
        np.asarray(scene["images"])[context_index],
        context_index,
        np.asarray(scene["c2w"]),
        np.asarray(scene["intrinsics"]),
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        indicator=int(scene["indicator"]),
        motion_strength=float(scene["motion_strength"]),
        rng=rng,
    )


@dataclasses.dataclass
class SceneResult:
    """One scene's generated frames, baseline and scores (PSNR in dB, SSIM unitless; target frames only)."""

    name: str
    indicator: int
    generated: np.ndarray  # (F, S, S, 3) in [0, 1]
    baseline: np.ndarray  # (F, S, S, 3)
    target: np.ndarray  # (F, S, S, 3)
    context_mask: np.ndarray  # (F,)
    psnr: float
    ssim: float
    psnr_copy_nearest: float
    ssim_copy_nearest: float


KIND_NAMES = {0: "3d", 1: "video", 2: "4d"}


def evaluate_scenes(
    pipeline, scenes: list[dict], *, num_inference_steps: int = 25, guidance_scale: float = 3.0, seed: int = 0,
    names: list[str] | None = None,
) -> tuple[dict[str, float], list[SceneResult]]:
    """Generates every scene (noise from ``jax.random.key(seed)`` folded with the scene's position) and scores it.

    Returns ``(metrics, results)``. ``metrics`` holds means over scenes: ``psnr``, ``ssim``,
    ``psnr_copy_nearest``, ``ssim_copy_nearest``, ``psnr_gain`` (= psnr − psnr_copy_nearest) and the same
    per kind (``psnr_3d``, ``psnr_4d``, ...).
    """
    if not scenes:
        raise ValueError("evaluate_scenes needs at least one scene")
    key = jax.random.key(seed)
    results = []
    for i, scene in enumerate(scenes):
        target = np.asarray(scene["images"], np.float32)
        mask = np.asarray(scene["context_mask"], bool)
        generated = generate_views(pipeline, scene, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, rng=jax.random.fold_in(key, i))
        baseline = copy_nearest_baseline(target, scene["c2w"], mask)
        scored = evaluate_views(generated, target, ~mask)
        base = evaluate_views(baseline, target, ~mask)
        indicator = int(scene["indicator"])
        name = names[i] if names else f"{KIND_NAMES.get(indicator, indicator)}_{int(scene.get('scene_index', i))}"
        results.append(SceneResult(name, indicator, generated, baseline, target, mask, float(scored["psnr"]),
                                   float(scored["ssim"]), float(base["psnr"]), float(base["ssim"])))
    return summarize(results), results


def summarize(results: list[SceneResult]) -> dict[str, float]:
    """Means over scenes, overall and per kind (see :func:`evaluate_scenes`)."""
    fields = ("psnr", "ssim", "psnr_copy_nearest", "ssim_copy_nearest")
    out = {f: float(np.mean([getattr(r, f) for r in results])) for f in fields}
    out["psnr_gain"] = out["psnr"] - out["psnr_copy_nearest"]
    for indicator in sorted({r.indicator for r in results}):
        kind = KIND_NAMES.get(indicator, str(indicator))
        group = [r for r in results if r.indicator == indicator]
        for f in fields:
            out[f"{f}_{kind}"] = float(np.mean([getattr(r, f) for r in group]))
    return out


def comparison_grid(result: SceneResult) -> np.ndarray:
    """uint8 (3·S, F·S, 3): rows ground truth, generated, copy-nearest baseline; context columns framed in green."""
    rows = []
    for frames in (result.target, result.generated, result.baseline):
        frames = np.clip(np.asarray(frames, np.float32), 0.0, 1.0).copy()
        frames[result.context_mask, :2] = frames[result.context_mask, -2:] = (0.0, 1.0, 0.0)
        rows.append(np.concatenate(list(frames), axis=1))
    return (np.concatenate(rows, axis=0) * 255.0 + 0.5).astype(np.uint8)
