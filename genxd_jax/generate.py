"""Generate 3D / video / 4D frames from one or a few images: ``python -m genxd_jax.generate``.

Example (one image, a 12-frame orbit, 3D mode, the official defaults):

    python -m genxd_jax.generate --checkpoint ckpt --image example.png --output out/example \\
        --camera orbit --elevation 15 --azimuth 0 360 --frames 12 --steps 25 --guidance 3 --mode 3d

Inputs:
- Images (PNG/JPG; RGBA is composited on white) are resized with LANCZOS to cover ``--size``² and
  centre-cropped, or first zero-padded to a square with ``--pad-to-square`` (genxd-model.md §14.1). The
  normalised focal length ``--focal`` (fx = fy, principal point at the centre) is adjusted for the crop or
  pad as the official does.
- Cameras (``--camera``): ``orbit`` (object orbit: ``--elevation``, ``--azimuth A1 A2``, ``--radius``),
  ``forward`` (the official forward-facing sweep; frames a multiple of 4), ``spiral`` (around the input view,
  ``--spiral-radius``, focus at ``--radius``), or a JSON file of poses (see :func:`load_camera_file`).
- Sampler (``--sampler``): ``euler`` (the official Euler–Karras loop, default), or the second-order ``heun``
  / ``dpmpp2m`` on the same schedule (:mod:`genxd_jax.diffusion.solvers`), which reach 25-step Euler's
  quality in fewer UNet evaluations (benchmarks/README.md, "Sampler quality vs steps"); ``--schedule
  SIGMA_MAX:SIGMA_MIN:RHO`` replaces the checkpoint's Karras schedule (e.g. ``--sampler dpmpp2m --steps 10
  --schedule 40:0.1:10``).
- Context placement: ``--context-index`` lists each image's frame slot; by default one image goes to slot 0
  (``--context-position first|mid|last`` as the official modes) and several images are spread evenly.

Outputs in ``--output``: ``frames/frame_XXX.png``, ``video.mp4`` (imageio's ffmpeg; ``--video-format gif`` for
a GIF), ``cameras.json`` (OpenCV c2w and w2c, normalised and pixel intrinsics, run settings) and
``preview.png`` (the preprocessed inputs, then every generated frame, side by side).

Progress: the denoising loop is one compiled program; a tqdm bar over the steps is driven from inside it
through ``jax.debug.callback`` (one host callback per step, negligible next to a UNet evaluation). The first
call also compiles, which the bar cannot show; a message says so.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from genxd_jax.geometry.cameras import (
    CameraError,
    intrinsics_matrix,
    opengl_to_opencv,
    pixel_intrinsics,
    rigid_inverse,
    validate_c2w,
    validate_intrinsics,
)
from genxd_jax.geometry.trajectories import (
    forward_trajectory,
    interpolate_poses,
    orbit_trajectory,
    smooth_trajectory,
    spiral_trajectory,
)

MODES = {"3d": 0, "video": 1, "4d": 2}


class GenerateError(ValueError):
    """A user-facing input problem (unreadable image, bad camera file, impossible settings)."""


# ----------------------------------------------------------------------------------------------------------
# Images.


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PNG/JPG; alpha is composited on white (as the official custom dataset)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGB", rgba.size, (255, 255, 255))
                background.paste(rgba, (0, 0), rgba)
                return np.asarray(background)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as e:
        raise GenerateError(f"image not found: {path}") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise GenerateError(f"cannot read image {path}: {e}") from e


def pad_to_square(image: np.ndarray) -> tuple[np.ndarray, tuple[float, float], tuple[int, int, int, int]]:
    """Zero-pads (H, W, 3) to a square, split as evenly as possible.

    Returns (padded, (sx, sy), (top, bottom, left, right)): normalised fx, fy are multiplied by sx = W/side
    and sy = H/side (the principal point stays at the centre, as the official assumes).
    """
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pads = (top, side - h - top, left, side - w - left)
    padded = np.zeros((side, side, image.shape[2]), image.dtype)
    padded[top : top + h, left : left + w] = image
    return padded, (w / side, h / side), pads


def resize_and_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """LANCZOS-resizes a uint8 (H, W, 3) image to cover (size, size), then centre-crops it (§14.1).

    Returns (image (size, size, 3) uint8, (sx, sy)): normalised fx, fy are multiplied by
    (scaled width / size, scaled height / size).
    """
    h, w = image.shape[:2]
    scale = max(size / h, size / w)
    hs, ws = round(h * scale), round(w * scale)
    resized = np.asarray(Image.fromarray(image).resize((ws, hs), Image.LANCZOS))
    row, col = (hs - size) // 2, (ws - size) // 2
    return resized[row : row + size, col : col + size], (ws / size, hs / size)


def preprocess_image(path, size: int, *, pad: bool = False) -> tuple[np.ndarray, tuple[float, float]]:
    """Reads and prepares one input: (image (size, size, 3) float32 in [0, 1], (fx factor, fy factor))."""
    image = read_image(path)
    fx_factor = fy_factor = 1.0
    if pad:
        image, (sx, sy), _ = pad_to_square(image)
        fx_factor, fy_factor = sx, sy
    image, (sx, sy) = resize_and_crop(image, size)
    return image.astype(np.float32) / 255.0, (fx_factor * sx, fy_factor * sy)


# ----------------------------------------------------------------------------------------------------------
# Cameras.


def load_camera_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, list[int] | None]:
    """Reads poses from JSON. Returns (c2w (N, 4, 4) OpenCV, intrinsics (3, 3)/(N, 3, 3) or None, context
    index or None).

    Accepted: a bare list of 4×4 (or 3×4) OpenCV camera-to-world matrices, or an object with
    ``"c2w"`` (4×4 or 3×4 each) or ``"w2c"`` (e.g. this tool's own cameras.json), optional ``"convention"``:
    ``"opencv"`` (default) or ``"opengl"`` (x right, y up, z backward), optional normalised ``"intrinsics"``
    and optional ``"context_index"``.
    """
    try:
        raw = json.loads(pathlib.Path(path).read_text())
    except FileNotFoundError as e:
        raise GenerateError(f"camera file not found: {path}") from e
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenerateError(f"cannot read camera file {path}: {e}") from e
    if isinstance(raw, list):
        raw = {"c2w": raw}
    if not isinstance(raw, dict) or ("c2w" not in raw and "w2c" not in raw):
        raise GenerateError(f"{path}: expected a list of poses or an object with 'c2w' or 'w2c'")
    key = "c2w" if "c2w" in raw else "w2c"
    try:
        mats = np.asarray(raw[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise GenerateError(f"{path}: '{key}' is not a list of numeric matrices: {e}") from e
    if mats.ndim != 3 or mats.shape[1:] not in ((3, 4), (4, 4)) or mats.shape[0] < 2:
        raise GenerateError(
            f"{path}: '{key}' must hold at least 2 matrices of shape 4×4 or 3×4, got {mats.shape}"
        )
    if mats.shape[1] == 3:
        mats = np.concatenate([mats, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(mats), 1, 4))], axis=1)
    mats = validate_c2w(mats, name=f"{path}: {key}")
    c2w = rigid_inverse(mats) if key == "w2c" else mats
    convention = raw.get("convention", "opencv")
    if convention not in ("opencv", "opengl"):
        raise GenerateError(f"{path}: convention must be 'opencv' or 'opengl', got {convention!r}")
    if convention == "opengl":
        c2w = opengl_to_opencv(c2w)
    k = raw.get("intrinsics", raw.get("intrinsics_normalised"))
    if k is not None:
        k = validate_intrinsics(np.asarray(k, dtype=np.float64), name=f"{path}: intrinsics")
    index = raw.get("context_index")
    return c2w, k, None if index is None else [int(i) for i in index]


def build_cameras(args, num_frames: int) -> tuple[np.ndarray, np.ndarray | None, list[int] | None]:
    """(c2w (F, 4, 4), intrinsics or None, context index or None) from the command-line camera options."""
    cam = args.camera
    if cam == "orbit":
        return orbit_trajectory(num_frames, args.elevation, tuple(args.azimuth), args.radius), None, None
    if cam == "forward":
        return forward_trajectory(num_frames, args.elevation, tuple(args.azimuth), args.radius), None, None
    if cam == "spiral":
        return (
            spiral_trajectory(num_frames, radius=args.spiral_radius, focus_distance=args.radius),
            None,
            None,
        )
    c2w, k, index = load_camera_file(cam)
    if args.fit != "none":
        fit = smooth_trajectory if args.fit == "smooth" else interpolate_poses
        c2w = fit(c2w, num_frames)
        if k is not None and k.ndim == 3:
            k = k[0]
        index = None
    elif args.frames is not None and args.frames != len(c2w):
        raise GenerateError(
            f"{cam} holds {len(c2w)} poses but --frames is {args.frames}; drop --frames or pass "
            "--fit smooth|linear to resample the poses"
        )
    return c2w, k, index


def default_context_index(num_images: int, num_frames: int, position: str) -> list[int]:
    """Frame slots of the inputs: one image at slot 0 / F//2 / F−1; several spread evenly from 0 to F−1."""
    if num_images >= num_frames:
        raise GenerateError(
            f"too many context views: {num_images} images for {num_frames} frames (at most {num_frames - 1})"
        )
    if num_images == 1:
        return [{"first": 0, "mid": num_frames // 2, "last": num_frames - 1}[position]]
    return [int(i) for i in np.round(np.linspace(0, num_frames - 1, num_images))]


# ----------------------------------------------------------------------------------------------------------
# Outputs.


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_outputs(
    out_dir: pathlib.Path,
    frames: np.ndarray,
    inputs: np.ndarray,
    cameras: dict,
    *,
    fps: float,
    video_format: str,
) -> dict[str, pathlib.Path]:
    """Writes frames/*.png, the video, cameras.json and preview.png; returns their paths."""
    import imageio.v2 as imageio

    frames8, inputs8 = to_uint8(frames), to_uint8(inputs)
    frame_dir = out_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames8):
        Image.fromarray(frame).save(frame_dir / f"frame_{i:03d}.png")
    video = out_dir / f"video.{video_format}"
    if video_format == "mp4":
        # macro_block_size=1 keeps odd sizes as they are instead of resizing with a warning. The ffmpeg
        # subprocess triggers JAX's (here harmless) os.fork warning: the child only execs ffmpeg.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            imageio.mimwrite(video, list(frames8), fps=fps, codec="libx264", quality=8, macro_block_size=1)
    else:
        imageio.mimwrite(video, list(frames8), duration=1000.0 / fps, loop=0)
    (out_dir / "cameras.json").write_text(json.dumps(cameras, indent=1))
    gap = np.full((frames8.shape[1], 8, 3), 255, np.uint8)
    strip = [*inputs8, gap, *frames8]
    Image.fromarray(np.concatenate(strip, axis=1)).save(out_dir / "preview.png")
    return {
        "frames": frame_dir,
        "video": video,
        "cameras": out_dir / "cameras.json",
        "preview": out_dir / "preview.png",
    }


def camera_record(c2w: np.ndarray, k_norm: np.ndarray, size: int, context_index, args) -> dict:
    """The cameras.json content: OpenCV c2w and w2c (3×4, as the official saves), intrinsics, settings."""
    k_pix = pixel_intrinsics(k_norm, size, size)
    return {
        "convention": "opencv",
        "height": size,
        "width": size,
        "c2w": c2w.tolist(),
        "w2c": rigid_inverse(c2w)[:, :3].tolist(),
        "intrinsics": k_norm.tolist(),
        "fx": k_pix[:, 0, 0].tolist(),
        "fy": k_pix[:, 1, 1].tolist(),
        "cx": k_pix[:, 0, 2].tolist(),
        "cy": k_pix[:, 1, 2].tolist(),
        "context_index": [int(i) for i in context_index],
        "mode": args.mode,
        "indicator": MODES[args.mode],
        "steps": args.steps,
        "sampler": getattr(args, "sampler", "euler"),
        "schedule": getattr(args, "schedule", None) or "checkpoint",
        "guidance": args.guidance,
        "motion_strength": args.motion,
        "seed": args.seed,
    }


# ----------------------------------------------------------------------------------------------------------
# CLI.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genxd_jax.generate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="released-layout folder with unet/, vae/, scheduler/")
    p.add_argument("--image", nargs="+", required=True, help="context image(s), PNG or JPG")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--size", type=int, default=256, help="square working resolution in pixels")
    p.add_argument("--pad-to-square", action="store_true", help="pad instead of centre-cropping")
    p.add_argument(
        "--focal", type=float, default=1.0938, help="normalised focal length fx = fy of the inputs"
    )
    p.add_argument("--camera", default="orbit", help="orbit, forward, spiral, or a JSON file of poses")
    p.add_argument("--elevation", type=float, default=0.0, help="degrees (orbit, forward)")
    p.add_argument(
        "--azimuth",
        type=float,
        nargs=2,
        default=(0.0, 360.0),
        metavar=("A1", "A2"),
        help="degrees (orbit: range with the end excluded; forward: e.g. -30 30)",
    )
    p.add_argument("--radius", type=float, default=2.0, help="orbit radius, or the spiral's focus distance")
    p.add_argument("--spiral-radius", type=float, default=0.3)
    p.add_argument(
        "--fit",
        choices=("none", "smooth", "linear"),
        default="none",
        help="resample the poses of a camera file to --frames (smooth spline or piecewise slerp)",
    )
    p.add_argument(
        "--frames", type=int, default=None, help="frames F (default 12, or the camera file's count)"
    )
    p.add_argument("--context-index", type=int, nargs="+", default=None, help="frame slot of each image")
    p.add_argument(
        "--context-position",
        choices=("first", "mid", "last"),
        default="first",
        help="slot of a single image when --context-index is not given",
    )
    p.add_argument("--steps", type=int, default=25)
    p.add_argument(
        "--sampler",
        choices=("euler", "heun", "dpmpp2m"),
        default="euler",
        help="ODE solver on the same Karras schedule: euler (official; --steps guided UNet evaluations), heun "
        "(2·steps − 1) or dpmpp2m (steps); e.g. --sampler dpmpp2m --steps 10",
    )
    p.add_argument(
        "--schedule",
        default=None,
        metavar="SIGMA_MAX:SIGMA_MIN:RHO",
        help="Karras schedule instead of the checkpoint's (released: 700:0.002:7); with --sampler dpmpp2m "
        "--steps 10, 40:0.1:10 came closer to the 200-step sampler than 25 official steps on the tiny model "
        "(benchmarks/README.md)",
    )
    p.add_argument("--guidance", type=float, default=3.0, help="CFG scale; <= 1 disables guidance")
    p.add_argument("--motion", type=float, default=0.0, help="motion strength (the official runs use 0)")
    p.add_argument("--mode", choices=tuple(MODES), default="3d")
    p.add_argument("--seed", type=int, default=3407)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="UNet compute precision (parameters stay float32)",
    )
    p.add_argument("--decode-chunk-size", type=int, default=None)
    p.add_argument("--video-format", choices=("mp4", "gif"), default="mp4")
    p.add_argument("--fps", type=float, default=None, help="video frame rate (default F/2, as the official)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> dict[str, pathlib.Path]:
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from genxd_jax.diffusion import SchedulerConfig, with_karras_schedule
    from genxd_jax.pipeline import GenXDPipeline

    if args.size < 8 or args.steps < 1:
        raise GenerateError("--size must be at least 8 and --steps at least 1")
    try:
        with_karras_schedule(SchedulerConfig(), args.schedule)  # checked before anything is loaded
    except ValueError as e:
        raise GenerateError(f"--schedule: {e}") from None
    if not np.isfinite(args.focal) or args.focal <= 0:
        raise CameraError(f"--focal must be positive, got {args.focal}")
    num_frames = args.frames if args.frames is not None else 12
    if num_frames < 2:
        raise GenerateError(f"--frames must be at least 2, got {num_frames}")
    c2w, k_file, file_index = build_cameras(args, num_frames)
    num_frames = len(c2w)
    context_index = (
        args.context_index
        or file_index
        or default_context_index(len(args.image), num_frames, args.context_position)
    )
    if len(context_index) != len(args.image):
        raise GenerateError(f"{len(args.image)} images but {len(context_index)} context indices")
    if len(context_index) >= num_frames:
        raise GenerateError(f"too many context views: {len(context_index)} for {num_frames} frames")

    processed = [preprocess_image(path, args.size, pad=args.pad_to_square) for path in args.image]
    images = np.stack([img for img, _ in processed])
    if k_file is not None:
        k = np.broadcast_to(k_file, (num_frames, 3, 3)) if k_file.ndim == 2 else k_file
        if k.shape[0] != num_frames:
            raise GenerateError(f"the camera file has {k.shape[0]} intrinsics for {num_frames} frames")
    else:
        sx, sy = processed[0][1]
        k = np.broadcast_to(intrinsics_matrix(args.focal * sx, args.focal * sy), (num_frames, 3, 3))

    dtype = dict(compute_dtype=jnp.bfloat16) if args.precision == "bf16" else {}
    pipe = GenXDPipeline.from_pretrained(args.checkpoint, decode_chunk_size=args.decode_chunk_size, **dtype)
    pipe.scheduler = with_karras_schedule(pipe.scheduler, args.schedule)
    inputs = pipe.prepare(
        images,
        context_index,
        c2w,
        k,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        indicator=MODES[args.mode],
        motion_strength=args.motion,
        rng=jax.random.key(args.seed),
    )
    print(
        f"GenXD: {num_frames} frames at {args.size}², {len(context_index)} context view(s) at "
        f"{list(context_index)}, mode {args.mode}, {args.steps} {args.sampler} steps, guidance {args.guidance} "
        "(the first run compiles the sampler before the bar moves)",
        file=sys.stderr,
    )
    start = time.perf_counter()
    with tqdm(total=args.steps, desc="denoising", unit="step", disable=args.no_progress) as bar:

        def advance(step: int) -> None:
            bar.update(max(step - bar.n, 0))

        # Without a progress bar the loop has no host callback, so the persistent compilation cache can keep it.
        latents = pipe.denoise(
            inputs, args.guidance, progress=None if args.no_progress else advance, sampler=args.sampler
        )
    frames = pipe.decode(latents)
    print(f"sampled in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    out_dir = pathlib.Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = camera_record(c2w, np.asarray(k), args.size, context_index, args)
    return write_outputs(
        out_dir, frames, images, record, fps=args.fps or num_frames / 2, video_format=args.video_format
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths = run(args)
    except ValueError as e:  # GenerateError, CameraError, CheckpointError and the pipeline's input checks
        parser.error(str(e))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
