"""``python -m genxd_jax.reconstruct --mode 4d``: a 4D orbit clip (generated or given) -> a dynamic scene.

Inputs (exactly one, as the 3D mode's flags):

- ``--image photo.png``: GenXD (:class:`genxd_jax.pipeline.GenXDPipeline`, ``indicator=2``, the 4D mode, motion
  strength ``--motion``) generates ``--frames`` frames on an orbit (``--elevation``, ``--radius``, azimuths
  0 → 360° without the endpoint, as ``genxd_jax.generate --mode 4d --camera orbit``) conditioned on the image
  in slot 0; frame i gets time t = i / (F − 1) — the camera orbits while time runs (paper Table 3 protocol).
- ``--views DIR``: a clip written by ``genxd_jax.generate --mode 4d`` (``DIR/frames/*.png`` +
  ``DIR/cameras.json``), or by this mode; times are ``cameras.json["times"]`` when present, else
  frame index / (T − 1). Nothing is generated.

Then :func:`genxd_jax.lift.fit_dynamic_scene` (config ``--fit-config`` ∈ ``object`` (default), ``tiny``;
``--iterations`` = fine-stage iterations, ``--coarse-iterations`` = static stage iterations (default: the
config's), ``--capacity`` = Gaussian slots).

Outputs, written into a temporary folder next to ``--output`` and renamed at the end (``--overwrite``
replaces an existing one; a failed run leaves nothing):

- ``scene/``: the :class:`genxd_jax.lift.fit4d.DynamicScene` (``canonical.ply``, ``deformation.safetensors``,
  ``deformation.json``, ``times/time_XXX.ply`` at ``--export-times`` evenly spaced times, default the clip's
  times);
- ``frames/frame_XXX.png`` + ``cameras.json`` (with ``"times"``): the clip that was fitted (a ``--views``
  folder again);
- ``video.mp4`` (or GIF): the scene orbiting (``--image``: a full orbit; ``--views``: a smooth path through
  the clip's cameras) while t runs 0 → 1, ``--video-frames`` frames;
- ``time_view_grid.png``: rows = times, columns = views (``--grid-size`` of each, evenly spaced over the clip);
- ``preview.png``: top row up to 8 frames of the clip, bottom row the dynamic scene at their (time, camera);
- ``metrics.json``: PSNR / SSIM of the fitted scene on the clip's (time, camera) pairs, and of the coarse
  static canonical scene for comparison, timings, counts.

Bad input (a clear error naming the flag or file): the 3D mode's rules, plus ``--images`` (not a 4D input),
fewer than 2 frames/times, times outside [0, 1] or not one per frame, a non-finite ``--motion``.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np


def add_arguments(p) -> None:
    """The 4D-only flags of ``genxd_jax.reconstruct`` (ignored by the 3D mode)."""
    g = p.add_argument_group("4D mode (--mode 4d)")
    g.add_argument("--motion", type=float, default=0.5, help="4D: GenXD motion strength of the generated clip")
    g.add_argument("--coarse-iterations", type=int, default=None,
                   help="4D: static (coarse) stage iterations (default: the 4D fit config's)")
    g.add_argument("--export-times", type=int, default=0,
                   help="4D: per-time .ply files at this many evenly spaced times (0: the clip's times)")
    g.add_argument("--grid-size", type=int, default=4, help="4D: times and views in time_view_grid.png")


def _errors():
    from genxd_jax.reconstruct import ReconstructError

    return ReconstructError


def fit_config_4d(args):
    """The :mod:`genxd_jax.lift.fit4d_config` variant named by ``--fit-config`` (default ``object``), with
    ``--capacity`` applied to the Gaussian slots."""
    from genxd_jax.lift.fit4d_config import VARIANTS, get_config

    err = _errors()
    variant = args.fit_config or "object"
    if variant not in VARIANTS:
        raise err(f"--mode 4d: --fit-config must be one of {VARIANTS}, got {variant!r}")
    config = get_config(variant)
    if args.capacity is not None:
        if args.capacity < 1:
            raise err(f"--capacity must be positive, got {args.capacity}")
        config.coarse.capacity = int(args.capacity)
    return config


def check_args_4d(args) -> None:
    err = _errors()
    if args.images is not None:
        raise err("--mode 4d takes --image (generate a 4D clip) or --views DIR (a 4D clip); --images is a "
                  "few-view 3D input")
    if not np.isfinite(args.motion):
        raise err(f"--motion must be finite, got {args.motion}")
    if args.coarse_iterations is not None and args.coarse_iterations < 1:
        raise err(f"--coarse-iterations must be >= 1, got {args.coarse_iterations}")
    if args.export_times < 0 or args.grid_size < 1:
        raise err("--export-times must be >= 0 and --grid-size >= 1")
    if args.image is not None and args.no_generate:
        raise err("--no-generate needs a clip: with --mode 4d use --views DIR")


def clip_times(raw, count: int, where) -> np.ndarray:
    """The clip's times: ``raw["times"]`` when present (validated), else index / (count − 1)."""
    err = _errors()
    if count < 2:
        raise err(f"{where}: a 4D clip needs at least 2 frames (times), got {count}")
    if isinstance(raw, dict) and "times" in raw:
        try:
            t = np.asarray(raw["times"], np.float64)
        except (TypeError, ValueError) as e:
            raise err(f"{where}: 'times' must be a list of numbers: {e}") from e
        if t.shape != (count,):
            raise err(f"{where}: 'times' has {t.size} entries for {count} frames (one time per frame)")
        if not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
            raise err(f"{where}: 'times' must lie in [0, 1], got [{np.nanmin(t):.4g}, {np.nanmax(t):.4g}]")
        return t
    return np.arange(count) / (count - 1)


def gather_4d(args):
    """(frames (T, S, S, 3), c2w (T, 4, 4), k (T, 3, 3), times (T,), video c2w (V, 4, 4), info)."""
    from genxd_jax.generate import preprocess_image
    from genxd_jax.geometry.cameras import intrinsics_matrix
    from genxd_jax.geometry.trajectories import orbit_trajectory
    from genxd_jax.reconstruct import _load_pipe, _named, fly_through_path, read_views_dir

    err = _errors()
    info: dict = {}
    if args.image is not None:
        with _named(args.image):
            image, factors = preprocess_image(args.image, args.size)
        k0 = intrinsics_matrix(args.focal * factors[0], args.focal * factors[1])
        c2w = orbit_trajectory(args.frames, args.elevation, (0.0, 360.0), args.radius)
        pipe = _load_pipe(args)
        import jax

        start = time.perf_counter()
        steps = args.steps
        from tqdm.auto import tqdm

        with tqdm(total=steps, desc="GenXD 4D clip", unit="step", disable=args.no_progress) as bar:
            frames = pipe(image[None], [0], c2w, k0, num_inference_steps=steps, guidance_scale=args.guidance,
                          indicator=2, motion_strength=float(args.motion), rng=jax.random.key(args.seed),
                          progress=None if args.no_progress else (lambda s: bar.update(max(s - bar.n, 0))))
        info["generation_s"] = time.perf_counter() - start
        frames = np.clip(np.asarray(frames, np.float32), 0.0, 1.0)
        k = np.broadcast_to(k0, (len(frames), 3, 3)).copy()
        times = np.arange(len(frames)) / (len(frames) - 1)
        video = orbit_trajectory(args.video_frames, args.elevation, (0.0, 360.0), args.radius)
        return frames, c2w, k, times, video, info
    frames, c2w, k, _ = read_views_dir(args.views, args.size)
    cam_path = pathlib.Path(args.views) / "cameras.json"
    raw = json.loads(cam_path.read_text())
    times = clip_times(raw, len(frames), cam_path)
    if len(frames) < 2:
        raise err(f"--views {args.views}: a 4D clip needs at least 2 frames, got {len(frames)}")
    return frames, c2w, k, times, fly_through_path(c2w, args.video_frames), info


def _render_all(d, times, c2w, k, size):
    from genxd_jax.lift.fit4d import render_at

    return np.stack([np.clip(np.asarray(render_at(d, float(t), c, kk, size, size).rgb), 0, 1)
                     for t, c, kk in zip(times, c2w, k)])


def _score(renders, frames) -> dict:
    from genxd_jax.evaluation.image_metrics import psnr, ssim

    p = np.asarray(psnr(renders, frames))
    return {"psnr": float(p.mean()), "ssim": float(np.asarray(ssim(renders, frames)).mean()),
            "psnr_per_frame": [round(float(x), 3) for x in p]}


def time_view_grid(d, times, c2w, k, size: int, n: int) -> np.ndarray:
    """(n·S, n·S, 3) image: row i = time times[i·], column j = camera c2w[j·] (n evenly spaced indices)."""
    idx = np.unique(np.round(np.linspace(0, len(times) - 1, min(n, len(times)))).astype(int))
    rows = []
    for i in idx:
        rows.append(np.concatenate(list(_render_all(d, [times[i]] * len(idx), c2w[idx], k[idx], size)), axis=1))
    return np.concatenate(rows, axis=0)


def run_4d(args) -> dict:
    """Mode ``4d``: gather (or generate) the clip, fit the dynamic scene, write everything atomically."""
    from PIL import Image

    from genxd_jax.generate import to_uint8
    from genxd_jax.lift import save_ply
    from genxd_jax.lift.fit import FitDivergedError
    from genxd_jax.lift.fit4d import fit_dynamic_scene
    from genxd_jax.reconstruct import atomic_output, camera_record, last_good_path, write_video

    err = _errors()
    check_args_4d(args)
    config = fit_config_4d(args)
    with atomic_output(args.output, overwrite=args.overwrite) as tmp:
        frames, c2w, k, times, video_c2w, info = gather_4d(args)
        size = frames.shape[1]
        start = time.perf_counter()
        try:
            d, fit_info = fit_dynamic_scene(frames, c2w, k, times, iterations=args.iterations, seed=args.seed,
                                            coarse_iterations=args.coarse_iterations, config=config,
                                            progress=not args.no_progress, return_info=True)
        except FitDivergedError as e:
            path = last_good_path(args.output)
            save_ply(e.last_good, path)
            raise err(f"the 4D fit diverged at iteration {e.iteration}; the last good canonical Gaussians were "
                      f"saved to {path}") from e
        info["fit_s"] = time.perf_counter() - start
        export = None if args.export_times == 0 else np.linspace(0.0, 1.0, args.export_times)
        d.save(tmp / "scene", times=export)
        (tmp / "frames").mkdir()
        for i, img in enumerate(to_uint8(frames)):
            Image.fromarray(img).save(tmp / "frames" / f"frame_{i:03d}.png")
        extra = {"mode": "4d", "times": [float(t) for t in times], "iterations": args.iterations,
                 "coarse_iterations": int(config.coarse_iterations if args.coarse_iterations is None
                                          else args.coarse_iterations),
                 "motion_strength": float(args.motion), "seed": args.seed}
        record = camera_record(c2w, k, size, ["generated" if args.image else "input"] * len(frames), extra)
        (tmp / "cameras.json").write_text(json.dumps(record, indent=1))
        video_t = np.linspace(0.0, 1.0, len(video_c2w))
        video_k = np.broadcast_to(k[0], (len(video_c2w), 3, 3))
        video = write_video(tmp / f"video.{args.video_format}", _render_all(d, video_t, video_c2w, video_k, size),
                            fps=args.fps)
        grid = time_view_grid(d, times, c2w, k, size, args.grid_size)
        Image.fromarray(to_uint8(grid)).save(tmp / "time_view_grid.png")
        from genxd_jax.evaluation.fewview import render_views

        fitted = _render_all(d, times, c2w, k, size)
        show = np.unique(np.round(np.linspace(0, len(frames) - 1, min(8, len(frames)))).astype(int))
        preview = np.concatenate([np.concatenate(list(frames[show]), 1), np.concatenate(list(fitted[show]), 1)], 0)
        Image.fromarray(to_uint8(preview)).save(tmp / "preview.png")
        static = render_views(d.canonical, c2w, k, size, size)
        metrics = {
            "mode": "4d",
            "num_frames": len(frames),
            "iterations": args.iterations,
            "coarse_iterations": extra["coarse_iterations"],
            "fit_config": config.variant,
            "capacity": int(config.coarse.capacity),
            "num_gaussians": int(np.asarray(d.canonical.active).sum()),
            "motion_strength": float(args.motion),
            "fit": _score(fitted, frames),
            "canonical_static": _score(np.clip(static, 0, 1), frames),
            "seconds_coarse": round(fit_info.seconds_coarse, 3),
            "seconds_fine": round(fit_info.seconds_fine, 3),
            "video": video.name,
            **{k_: round(v, 3) for k_, v in info.items()},
        }
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


__all__ = ["add_arguments", "check_args_4d", "clip_times", "fit_config_4d", "gather_4d", "run_4d",
           "time_view_grid"]
