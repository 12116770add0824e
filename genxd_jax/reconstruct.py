"""Lift one or a few images to a 3D Gaussian scene: ``python -m genxd_jax.reconstruct``.

Input modes (exactly one):

- ``--image photo.png``: single view → 3D (paper Table 6 protocol): GenXD generates anchor views on an orbit
  (``--camera orbit``) or forward sweep (``--camera forward``) conditioned on the image, then
  ``--interp`` views between each pair of neighbouring anchors conditioned on the nearest anchors
  (:mod:`genxd_jax.lift.planning`); 3D-GS is fitted on the input + all generated views.
- ``--images a.png b.png c.png --cameras cams.json``: few-view (paper Table 4 protocol): the official smoothing
  B-spline through the input cameras (:func:`genxd_jax.geometry.spline_trajectory`, ``--path-frames``
  samples, optional ``--shift-x`` / ``--shift-z`` copies), generated in groups of F − V with the V nearest
  inputs as context (:func:`genxd_jax.lift.planning.group_targets`), then 3D-GS on inputs + generated views.
  ``cams.json`` is the camera file of ``genxd_jax.generate`` (:func:`genxd_jax.generate.load_camera_file`): a
  list of 4×4 (or 3×4) OpenCV camera-to-world matrices, one per image in the order of ``--images``, or an
  object with ``"c2w"`` (or ``"w2c"``), optional ``"convention": "opengl"``, and optional normalised
  ``"intrinsics"`` ((3, 3) shared or one per image, normalised by the *original* image's width / height;
  the resize and centre crop to ``--size`` is applied to them). Without intrinsics, ``--focal`` is used.
- ``--views DIR``: a folder of views with cameras as ``genxd_jax.generate`` (or this tool) writes them:
  ``DIR/cameras.json`` (``c2w``, per-view ``intrinsics``) and ``DIR/frames/*.png`` in sorted order (or the
  file names listed under ``"frames"`` in cameras.json). The views are fitted as they are (they are usually
  already generated views); nothing is generated.

``--no-generate`` fits the inputs alone (the paper's baseline rows). ``--heldout DIR`` (same layout as
``--views``) adds held-out metrics.

Outputs, written into a temporary folder next to ``--output`` and renamed at the end (a failed or interrupted
run — an exception, Ctrl-C or SIGTERM — leaves no ``--output`` and removes the temporary folder; ``--overwrite``
replaces an existing one):

- ``point_cloud.ply``: the standard INRIA 3D-GS layout (SIBR, SuperSplat, web splat viewers);
- ``frames/frame_XXX.png`` + ``cameras.json``: every view the fit used (inputs first), in the layout that
  ``--views`` and ``genxd_jax.generate`` use, with ``"kind"`` per view (``input`` / ``generated``);
- ``video.mp4`` (``--video-format gif`` for a GIF): a fly-through of the fitted scene along a smooth path;
- ``preview.png``: top row the views used (up to 8), bottom row the fitted scene rendered at those cameras;
- ``metrics.json``: PSNR / SSIM of the fit on the views used (and on the inputs alone), on ``--heldout``
  views when given, timings, the number of Gaussians.

A fit whose loss turns non-finite stops with an error naming the iteration; the last good Gaussians are
saved as ``<output>.last_good.ply`` next to the output folder (the output folder itself is not created).

Progress: tqdm bars with ETA for the generation groups and for the fitting iterations.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

from genxd_jax.generate import GenerateError, load_camera_file, preprocess_image, to_uint8
from genxd_jax.geometry.cameras import (
    CameraError,
    intrinsics_matrix,
    pixel_intrinsics,
    rigid_inverse,
)


class ReconstructError(ValueError):
    """A user-facing input problem: missing cameras, too few views, a bad camera file, a diverged fit."""


# ----------------------------------------------------------------------------------------------------------
# Inputs.


@contextlib.contextmanager
def _named(path):
    """Re-raises camera / image errors with the file they came from."""
    try:
        yield
    except (CameraError, GenerateError) as e:
        msg = str(e)
        raise ReconstructError(msg if str(path) in msg else f"{path}: {msg}") from e


def adjust_intrinsics(k: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    """Normalised intrinsics of the original image -> of the resized, centre-cropped square (see
    :func:`genxd_jax.generate.resize_and_crop`): focal × factor, principal point 0.5 + (c − 0.5) × factor."""
    k = np.array(k, np.float64)
    for row, f in ((0, factors[0]), (1, factors[1])):
        k[..., row, row] *= f
        k[..., row, 2] = 0.5 + (k[..., row, 2] - 0.5) * f
    return k


def load_image_set(image_paths, cameras_path, size: int, focal: float):
    """Images with the cameras of a camera file -> (images (V, S, S, 3), c2w (V, 4, 4), k (V, 3, 3))."""
    with _named(cameras_path):
        c2w, k, _ = load_camera_file(cameras_path)
    if len(c2w) < len(image_paths):
        raise ReconstructError(
            f"{cameras_path}: {len(c2w)} camera(s) for {len(image_paths)} images; image "
            f"{image_paths[len(c2w)]} has no camera (one pose per image, in the order of --images)"
        )
    if len(c2w) > len(image_paths):
        raise ReconstructError(
            f"{cameras_path}: {len(c2w)} cameras but {len(image_paths)} images; pass one image per camera"
        )
    images, ks = [], []
    for i, path in enumerate(image_paths):
        with _named(path):
            img, factors = preprocess_image(path, size)
        images.append(img)
        if k is None:
            ks.append(intrinsics_matrix(focal * factors[0], focal * factors[1]))
        else:
            base = k if k.ndim == 2 else k[i]
            ks.append(adjust_intrinsics(base, factors))
    if k is not None and k.ndim == 3 and len(k) != len(image_paths):
        raise ReconstructError(f"{cameras_path}: {len(k)} intrinsics for {len(image_paths)} images")
    return np.stack(images), c2w, np.stack(ks)


def read_views_dir(directory, size: int, *, what: str = "--views"):
    """A folder of frames + cameras.json -> (images (V, S, S, 3), c2w (V, 4, 4), k (V, 3, 3), frame paths)."""
    d = pathlib.Path(directory)
    cam_path = d / "cameras.json"
    if not d.is_dir():
        raise ReconstructError(f"{what}: {d} is not a folder")
    if not cam_path.is_file():
        raise ReconstructError(f"{what}: {cam_path} not found (expected frames/ and cameras.json)")
    try:
        raw = json.loads(cam_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReconstructError(f"cannot read {cam_path}: {e}") from e
    if isinstance(raw, dict) and "frames" in raw:
        frames = [d / name for name in raw["frames"]]
    else:
        frames = sorted((d / "frames").glob("*.png")) + sorted((d / "frames").glob("*.jpg"))
    if not frames:
        raise ReconstructError(f"{what}: no frames in {d / 'frames'}")
    with _named(cam_path):
        c2w, k, _ = load_camera_file(cam_path)
    if len(c2w) != len(frames):
        missing = frames[len(c2w)] if len(frames) > len(c2w) else None
        detail = f"frame {missing} has no camera" if missing else f"{len(c2w) - len(frames)} camera(s) have no frame"
        raise ReconstructError(f"{cam_path}: {len(c2w)} cameras for {len(frames)} frames; {detail}")
    if isinstance(raw, dict) and ("height" in raw) != ("width" in raw):
        raise ReconstructError(f"{cam_path}: give both 'height' and 'width' or neither")
    images, ks = [], []
    for i, path in enumerate(frames):
        with _named(path):
            img, factors = preprocess_image(path, size)
        images.append(img)
        if k is None:
            raise ReconstructError(f"{cam_path}: no 'intrinsics' (normalised 3×3, shared or one per frame)")
        base = k if k.ndim == 2 else k[i]
        ks.append(adjust_intrinsics(base, factors))
    return np.stack(images), c2w, np.stack(ks), [str(p) for p in frames]


# ----------------------------------------------------------------------------------------------------------
# Atomic output.


@contextlib.contextmanager
def atomic_output(output, *, overwrite: bool = False):
    """Yields a fresh temporary folder next to ``output``; renames it to ``output`` on success, deletes it
    on any error (so no half-written scene is left)."""
    out = pathlib.Path(output).resolve()
    if out.exists() and not overwrite:
        raise ReconstructError(f"--output {out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "previous")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def last_good_path(output) -> pathlib.Path:
    """Where a diverged fit's last good Gaussians go: ``<output>.last_good.ply`` beside the output folder."""
    out = pathlib.Path(output).resolve()
    return out.parent / f"{out.name}.last_good.ply"


# ----------------------------------------------------------------------------------------------------------
# Fitting, rendering, writing.


def fit_config(args, single_view: bool):
    """The fit's ml_collections config: ``--fit-config`` (default ``single_view`` for --image, ``few_view``
    otherwise; :mod:`genxd_jax.lift.fit_config`) with ``--capacity`` applied."""
    from genxd_jax.lift.fit_config import VARIANTS, get_config

    variant = args.fit_config or ("single_view" if single_view else "few_view")
    if variant not in VARIANTS:
        raise ReconstructError(f"--fit-config must be one of {VARIANTS}, got {variant!r}")
    config = get_config(variant)
    if args.capacity is not None:
        if args.capacity < 1:
            raise ReconstructError(f"--capacity must be positive, got {args.capacity}")
        config.capacity = int(args.capacity)
    return config


def fit_views(images, c2w, k, args, *, weights=None, output=None, config=None):
    """Fits 3D-GS (:func:`genxd_jax.lift.fit_scene`); a non-finite loss becomes a ReconstructError naming the
    iteration, after saving the last good Gaussians to :func:`last_good_path`."""
    from genxd_jax.lift import save_ply
    from genxd_jax.lift.fit import FitDivergedError, fit_scene

    try:
        return fit_scene(images, c2w, k, iterations=args.iterations, seed=args.seed, weights=weights,
                         config=config, progress=not args.no_progress)
    except FitDivergedError as e:
        path = last_good_path(output)
        save_ply(e.last_good, path)
        raise ReconstructError(
            f"the fit diverged: non-finite loss or gradient at iteration {e.iteration}; the last good "
            f"Gaussians (after iteration {e.iteration - 1}) were saved to {path}"
        ) from e


def render_views(g, c2w, k, size: int) -> np.ndarray:
    """(V, S, S, 3) renders of ``g`` at every camera (one compiled program per size)."""
    from genxd_jax.evaluation.fewview import render_views as _render

    return _render(g, c2w, k, size, size)


def fly_through_path(c2w: np.ndarray, count: int) -> np.ndarray:
    """A smooth path through the cameras for the video: the official B-spline (endpoint included) through
    the cameras chained by proximity (:func:`genxd_jax.geometry.order_by_proximity`)."""
    from genxd_jax.geometry.spline import spline_trajectory

    try:
        return spline_trajectory(c2w, count, endpoint=True, order=True)
    except (CameraError, ValueError):
        from genxd_jax.geometry.trajectories import interpolate_poses

        return interpolate_poses(c2w, count)


def write_video(path: pathlib.Path, frames: np.ndarray, fps: float) -> pathlib.Path:
    """mp4 through imageio-ffmpeg, falling back to a GIF when no ffmpeg is available."""
    import imageio.v2 as imageio

    frames8 = list(to_uint8(frames))
    if path.suffix == ".mp4":
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
                imageio.mimwrite(path, frames8, fps=fps, codec="libx264", quality=8, macro_block_size=1)
            return path
        except Exception as e:  # noqa: BLE001 - ffmpeg missing or broken: keep the run, write a GIF
            print(f"mp4 writing failed ({e}); writing a GIF instead", file=sys.stderr)
            path.unlink(missing_ok=True)
            path = path.with_suffix(".gif")
    imageio.mimwrite(path, frames8, duration=1000.0 / fps, loop=0)
    return path


def camera_record(c2w, k, size: int, kinds: list[str], extra: dict) -> dict:
    k_pix = pixel_intrinsics(k, size, size)
    return {
        "convention": "opencv",
        "height": size,
        "width": size,
        "frames": [f"frames/frame_{i:03d}.png" for i in range(len(c2w))],
        "c2w": np.asarray(c2w).tolist(),
        "w2c": rigid_inverse(c2w)[:, :3].tolist(),
        "intrinsics": np.asarray(k).tolist(),
        "fx": k_pix[:, 0, 0].tolist(),
        "fy": k_pix[:, 1, 1].tolist(),
        "cx": k_pix[:, 0, 2].tolist(),
        "cy": k_pix[:, 1, 2].tolist(),
        "kind": kinds,
        **extra,
    }


def write_scene(out: pathlib.Path, g, images, c2w, k, kinds, args, metrics: dict, video_c2w) -> dict:
    """Writes every output file into ``out`` (the temporary folder); returns their paths."""
    from PIL import Image

    from genxd_jax.lift import save_ply

    size = images.shape[1]
    save_ply(g, out / "point_cloud.ply")
    (out / "frames").mkdir()
    for i, img in enumerate(to_uint8(images)):
        Image.fromarray(img).save(out / "frames" / f"frame_{i:03d}.png")
    extra = {"mode": args.mode, "iterations": args.iterations, "seed": args.seed}
    (out / "cameras.json").write_text(json.dumps(camera_record(c2w, k, size, kinds, extra), indent=1))
    video = write_video(out / f"video.{args.video_format}", render_views(g, video_c2w, k[0], size),
                        fps=args.fps)
    show = min(8, len(images))
    renders = render_views(g, c2w[:show], k[:show], size)
    grid = np.concatenate([np.concatenate(list(images[:show]), 1), np.concatenate(list(renders), 1)], 0)
    Image.fromarray(to_uint8(grid)).save(out / "preview.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return {"ply": "point_cloud.ply", "video": video.name, "preview": "preview.png",
            "cameras": "cameras.json", "metrics": "metrics.json"}


def score(g, images, c2w, k) -> dict:
    from genxd_jax.evaluation.fewview import score_views

    return score_views(g, images, c2w, k)


# ----------------------------------------------------------------------------------------------------------
# 3D mode.


def _load_pipe(args):
    import jax.numpy as jnp

    from genxd_jax.pipeline import GenXDPipeline

    if args.checkpoint is None:
        raise ReconstructError("--checkpoint is required unless --no-generate is given")
    dtype = dict(compute_dtype=jnp.bfloat16) if args.precision == "bf16" else {}
    return GenXDPipeline.from_pretrained(args.checkpoint, **dtype)


def gather_3d(args):
    """The views to fit in 3D mode: (images, c2w, k, kinds, video path, info)."""
    from genxd_jax.geometry.spline import spline_trajectory
    from genxd_jax.geometry.trajectories import interpolate_poses, orbit_trajectory
    from genxd_jax.lift.planning import generate_single_view, generate_views, single_view_plan

    info: dict = {}
    if args.image is not None:
        image, factors = None, None
        with _named(args.image):
            image, factors = preprocess_image(args.image, args.size)
        k0 = intrinsics_matrix(args.focal * factors[0], args.focal * factors[1])
        plan = single_view_plan(args.frames, camera=args.camera, per_segment=args.interp,
                                elevation=args.elevation, radius=args.radius)
        if args.no_generate:
            raise ReconstructError("--no-generate needs at least 2 posed views; --image gives one "
                                   "(use --images ... --cameras ... or --views DIR)")
        start = time.perf_counter()
        images, c2w = generate_single_view(_load_pipe(args), image, k0, plan, num_context=args.num_context,
                                           num_inference_steps=args.steps, guidance_scale=args.guidance,
                                           seed=args.seed, normalise_scale=args.normalise_scale,
                                           progress=not args.no_progress)
        info["generation_s"] = time.perf_counter() - start
        kinds = ["input"] + ["generated"] * (len(images) - 1)
        k = np.broadcast_to(k0, (len(images), 3, 3)).copy()
        if args.camera == "orbit":
            video_c2w = orbit_trajectory(args.video_frames, args.elevation, (0.0, 360.0), args.radius)
        else:
            video_c2w = interpolate_poses(np.concatenate([plan.anchor_c2w, plan.anchor_c2w[:1]]),
                                          args.video_frames)
        return images, c2w, k, kinds, video_c2w, info
    if args.images is not None:
        if args.cameras is None:
            raise ReconstructError("--images needs --cameras cams.json (one OpenCV c2w per image)")
        if len(args.images) < 2:
            raise ReconstructError(f"few-view mode needs at least 2 images, got {len(args.images)}; "
                                   "use --image for a single view")
        images, c2w, k = load_image_set(args.images, args.cameras, args.size, args.focal)
    else:
        images, c2w, k, _ = read_views_dir(args.views, args.size)
        if len(images) < 2:
            raise ReconstructError(f"--views {args.views}: at least 2 views are needed, got {len(images)}")
    kinds = ["input"] * len(images)
    path_keys = c2w
    if args.images is not None and not args.no_generate:
        targets = spline_trajectory(c2w, args.path_frames, shift_x=args.shift_x, shift_z=args.shift_z)
        start = time.perf_counter()
        generated = generate_views(_load_pipe(args), images, c2w, targets, k, frames=args.frames,
                                   num_context=args.num_context, num_inference_steps=args.steps,
                                   guidance_scale=args.guidance, seed=args.seed,
                                   normalise_scale=args.normalise_scale, progress=not args.no_progress)
        info["generation_s"] = time.perf_counter() - start
        images = np.concatenate([images, generated])
        c2w = np.concatenate([c2w, targets])
        k = np.concatenate([k, np.broadcast_to(k[0], (len(targets), 3, 3))])
        kinds += ["generated"] * len(targets)
    return images, c2w, k, kinds, fly_through_path(path_keys, args.video_frames), info


def run_3d(args) -> dict:
    """Mode ``3d``: gather (and generate) views, fit 3D-GS, write the scene atomically."""
    heldout = read_views_dir(args.heldout, args.size, what="--heldout")[:3] if args.heldout else None
    with atomic_output(args.output, overwrite=args.overwrite) as tmp:
        images, c2w, k, kinds, video_c2w, info = gather_3d(args)
        weights = None if args.generated_weight == 1.0 else np.where(
            np.asarray(kinds) == "input", 1.0, args.generated_weight)
        config = fit_config(args, single_view=args.image is not None)
        start = time.perf_counter()
        g = fit_views(images, c2w, k, args, weights=weights, output=args.output, config=config)
        info["fit_s"] = time.perf_counter() - start
        is_input = np.asarray(kinds) == "input"
        metrics = {
            "mode": args.mode,
            "num_views": len(images),
            "num_inputs": int(is_input.sum()),
            "num_generated": int((~is_input).sum()),
            "iterations": args.iterations,
            "fit_config": config.variant,
            "capacity": int(config.capacity),
            "num_gaussians": int(np.asarray(g.active).sum()),
            "fit": score(g, images, c2w, k),
            "fit_inputs": score(g, images[is_input], c2w[is_input], k[is_input]),
            **{k_: round(v, 3) for k_, v in info.items()},
        }
        if heldout is not None:
            metrics["heldout"] = score(g, *heldout)
        write_scene(tmp, g, images, c2w, k, kinds, args, metrics, video_c2w)
    return metrics


MODES = {"3d": run_3d}


def run_4d(args) -> dict:
    """Mode ``4d`` (issue 15): a 4D clip -> a dynamic scene; implemented in :mod:`genxd_jax.lift.reconstruct4d`."""
    from genxd_jax.lift.reconstruct4d import run_4d as _run_4d

    return _run_4d(args)


MODES["4d"] = run_4d


# ----------------------------------------------------------------------------------------------------------
# CLI.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genxd_jax.reconstruct",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="single view → 3D (PNG/JPG)")
    src.add_argument("--images", nargs="+", help="few-view inputs; needs --cameras")
    src.add_argument("--views", help="folder with frames/ and cameras.json (as genxd_jax.generate writes)")
    p.add_argument("--cameras", help="camera file of --images (genxd_jax.generate's camera JSON format)")
    p.add_argument("--output", required=True, help="output folder (created atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--mode", choices=tuple(MODES), default="3d")
    p.add_argument("--checkpoint", help="released-layout folder with unet/, vae/, scheduler/")
    p.add_argument("--no-generate", action="store_true", help="fit the inputs alone (the paper's baseline)")
    p.add_argument("--heldout", help="folder of held-out views (frames/ + cameras.json) to score")
    p.add_argument("--size", type=int, default=256, help="square working resolution in pixels")
    p.add_argument("--focal", type=float, default=1.0938,
                   help="normalised focal length fx = fy when no intrinsics are given")
    p.add_argument("--frames", type=int, default=12, help="frames F per generation call")
    p.add_argument("--num-context", type=int, default=3, help="context views V per generation call")
    p.add_argument("--steps", type=int, default=25, help="denoising steps")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--normalise-scale", action="store_true",
                   help="normalise each call's camera scale as this repository's training does")
    p.add_argument("--camera", choices=("orbit", "forward"), default="orbit", help="single view: anchor path")
    p.add_argument("--elevation", type=float, default=0.0, help="single view: degrees")
    p.add_argument("--radius", type=float, default=2.0, help="single view: orbit radius")
    p.add_argument("--interp", type=int, default=1, help="single view: views between neighbouring anchors")
    p.add_argument("--path-frames", type=int, default=18, help="few view: views on the spline (official -n)")
    p.add_argument("--shift-x", type=float, nargs="*", default=None, help="few view: path copies (official -sx)")
    p.add_argument("--shift-z", type=float, nargs="*", default=None, help="few view: path copies (official -sz)")
    p.add_argument("--iterations", type=int, default=2000, help="3D-GS iterations")
    p.add_argument("--fit-config", default=None,
                   help="genxd_jax.lift.fit_config variant (default single_view for --image, else few_view)")
    p.add_argument("--capacity", type=int, default=None, help="Gaussian slots (overrides the fit config)")
    p.add_argument("--generated-weight", type=float, default=1.0,
                   help="sampling weight of a generated view relative to an input view while fitting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video-frames", type=int, default=48)
    p.add_argument("--video-format", choices=("mp4", "gif"), default="mp4")
    p.add_argument("--fps", type=float, default=12.0)
    p.add_argument("--no-progress", action="store_true")
    from genxd_jax.lift.reconstruct4d import add_arguments as _add_4d_arguments  # --mode 4d flags (issue 15)

    _add_4d_arguments(p)
    return p


def check_args(args) -> None:
    if args.size < 16 or args.size % 16:
        raise ReconstructError(f"--size must be a positive multiple of 16, got {args.size}")
    if args.iterations < 1 or args.steps < 1 or args.frames < 2 or args.video_frames < 2:
        raise ReconstructError("--iterations, --steps ≥ 1, --frames, --video-frames ≥ 2 required")
    if args.cameras is not None and args.images is None:
        raise ReconstructError("--cameras goes with --images")
    if not np.isfinite(args.focal) or args.focal <= 0:
        raise ReconstructError(f"--focal must be positive, got {args.focal}")


def run(args) -> dict:
    check_args(args)
    return MODES[args.mode](args)


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds like an exception so the temporary output folder is removed."""


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Terminated(128 + signum)


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        metrics = run(args)
    except ValueError as e:  # ReconstructError, CameraError, GenerateError, the pipeline's input checks
        parser.error(str(e))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(json.dumps({"output": str(pathlib.Path(args.output).resolve()), **metrics}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
