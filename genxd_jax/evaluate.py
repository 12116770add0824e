"""The paper's evaluation protocols: ``python -m genxd_jax.evaluate {video,clip-i,fewview} ...``.

Each subcommand writes a JSON report and a Markdown table shaped like the paper's (and prints the table):

* ``video`` — FID and FVD between a folder of generated clips and a folder of reference clips (Table 2,
  Cam-DAVIS, single-view and 3-view conditioning; run it once per conditioning and name the row with
  ``--name``)::

      python -m genxd_jax.evaluate video --generated out/davis_1view --reference data/cam_davis \\
          --inception fid_inception.safetensors --i3d i3d.safetensors --output eval/davis_1view

  A clip is a video file (``.mp4``, ``.gif``, ... read with imageio) or a folder of frames (PNG/JPG, sorted by
  name); clips are matched by nothing but their count, and all must have the same number of frames (after
  ``--frames``). Frames are resized (short side, PIL bicubic) and centre-cropped to ``--size``² first (default
  256, GenXD's resolution; ``--size 0`` keeps them as stored). FID is computed on every frame of every clip
  (pool3, ``--fid-resize``, default pytorch-fid's), FVD on whole clips (I3D logits, 224², ``--fvd-resize``,
  default the original TF1 resize). Defaults where the paper says nothing (it does not state frames, size or
  sample count for Cam-DAVIS): all frames of each clip (``--frames``), 256², all clips (20 for Cam-DAVIS).
* ``clip-i`` — CLIP-I (x100, as the paper prints it) between a reference image and rendered views or frames:
  Table 6 (``--protocol 3d``: 7 views on an orbit around the lifted scene) or Table 3 (``--protocol 4d``: the
  frames of the 4D clip)::

      python -m genxd_jax.evaluate clip-i --reference example.png --views renders/ --clip clip_l14.safetensors \\
          --output eval/example
      python -m genxd_jax.evaluate clip-i --reference example.png --ply lifted.ply --orbit-views 7 \\
          --elevation 15 --radius 2.0 --clip model.safetensors --output eval/example

  ``--views`` is a folder of images or a video; ``--ply`` renders ``--orbit-views`` views of a 3D-GS ``.ply``
  on an orbit (``genxd_jax.geometry.orbit_trajectory`` + ``genxd_jax.lift.render``).
* ``fewview`` — the ReconFusion few-view protocol (Table 4), from ``genxd_jax.evaluation.fewview`` (its
  options are its own; see ``python -m genxd_jax.evaluate fewview --help``).

Weights are converted safetensors files (``python -m genxd_jax.tools.convert_metrics``), passed as paths; a
missing one is an error that names the option and the converter.

Outputs in ``--output``: ``report.json`` and ``table.md``, written atomically (temporary file + rename).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: The paper's rows, shown under the measured row.
PAPER_TABLE2 = [("MotionCtrl", 118.14, 1464.08), ("CameraCtrl", 138.64, 1470.59),
                ("GenXD (Single View)", 101.78, 1208.93), ("GenXD (3 Views)", 55.64, 490.50)]
PAPER_TABLE6 = [("ImageDream", 83.77), ("One2345++", 83.78), ("IM-3D", 91.40), ("GenXD", 84.75)]
PAPER_TABLE3 = [("Zero-1-to-3-V", 79.25), ("RealFusion-V", 80.26), ("Animate124", 85.44),
                ("GenXD (Single View)", 90.32)]


class EvaluationError(ValueError):
    """Bad evaluation input (a missing weights file, an empty folder, clips of different lengths ...)."""


# ------------------------------------------------------------------------------------------------- I/O


def _write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_outputs(output, report: dict, table: str) -> None:
    out = pathlib.Path(output)
    _write_atomic(out / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    _write_atomic(out / "table.md", table + "\n")


def _to_rgb(img) -> np.ndarray:
    """PIL image -> (H, W, 3) uint8; transparency is composited on white (as `genxd_jax.generate`)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"))


def read_image(path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return _to_rgb(img)
    except (OSError, UnidentifiedImageError) as e:
        raise EvaluationError(f"{path}: cannot read the image: {e}") from e


def read_frames(path) -> np.ndarray:
    """A clip as (T, H, W, 3) uint8: a video file, or a folder of frames sorted by name."""
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise EvaluationError(f"{path}: a clip folder with no frames ({'/'.join(IMAGE_SUFFIXES)})")
        frames = [read_image(f) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise EvaluationError(f"{path}: frames of different sizes {sorted({f.shape for f in frames})}")
        return np.stack(frames)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        import imageio.v3 as iio

        try:
            frames = np.asarray(iio.imread(path, index=None))
        except Exception as e:  # imageio raises plugin-specific errors
            raise EvaluationError(f"{path}: cannot read the video: {e}") from e
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4:
            raise EvaluationError(f"{path}: not a video of RGB frames (array shape {frames.shape})")
        if frames.shape[-1] == 4:  # GIF/WebM with alpha: composite on white
            a = frames[..., 3:].astype(np.float32) / 255.0
            frames = np.round(frames[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        elif frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
        return frames[..., :3].astype(np.uint8)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path)[None]
    raise EvaluationError(f"{path}: not a video ({'/'.join(VIDEO_SUFFIXES)}), an image or a folder of frames")


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3): short side to `size` (PIL bicubic), centre crop."""
    from PIL import Image

    t, h, w, _ = frames.shape
    if not size or (h, w) == (size, size):
        return frames
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    out = [np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC))[top:top + size, left:left + size]
           for f in frames]
    return np.stack(out)


def list_clips(folder, what: str) -> list[pathlib.Path]:
    """The clips of a folder: video files and sub-folders of frames, sorted by name."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"--{what}: {folder} is not a folder")
    clips = sorted(p for p in folder.iterdir()
                   if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
                   or (p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir())))
    if not clips:
        raise EvaluationError(f"--{what}: {folder} holds no clips (video files {'/'.join(VIDEO_SUFFIXES)} or "
                              "folders of frames)")
    return clips


class ClipFolder:
    """A lazily read sequence of clips `(T, S, S, 3)` uint8 from a folder; `T` is checked on every read."""

    def __init__(self, folder, what: str, frames: int | None, size: int, max_clips: int | None = None):
        self.paths = list_clips(folder, what)[:max_clips] if max_clips else list_clips(folder, what)
        self.what, self.frames, self.size = what, frames, size
        self.length = frames  # fixed by the first clip read when --frames is not given

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        path = self.paths[i]
        clip = read_frames(path)
        if self.frames:
            if len(clip) < self.frames:
                raise EvaluationError(f"--{self.what}: {path} has {len(clip)} frames, fewer than --frames "
                                      f"{self.frames}")
            clip = clip[:self.frames]
        if self.length is None:
            self.length = len(clip)
        elif len(clip) != self.length:
            raise EvaluationError(f"--{self.what}: {path} has {len(clip)} frames but the clips before it have "
                                  f"{self.length}; clip lengths must match (use --frames N to take the first N)")
        return resize_square(clip, self.size)


def _require(path, option: str, network: str) -> str:
    if not path:
        raise EvaluationError(f"{option} is required: the {network} weights as a converted safetensors file "
                              f"(python -m genxd_jax.tools.convert_metrics {network.lower()} SRC OUT.safetensors)")
    if not pathlib.Path(path).is_file():
        raise EvaluationError(f"{option} {path}: no such file (convert the {network} weights with python -m "
                              f"genxd_jax.tools.convert_metrics {network.lower()} SRC OUT.safetensors)")
    return str(path)


# ----------------------------------------------------------------------------------------------- video


def video_features(clips: ClipFolder, i3d, inception, *, batch_size: int, fid_batch: int, fid_resize: str,
                   progress: bool, desc: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One pass over a clip folder: (I3D features (N, 400), Inception frame features (N*T, 2048))."""
    from tqdm import tqdm

    fvd_feats, fid_feats = [], []
    with tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress) as bar:
        for start in range(0, len(clips), batch_size):
            batch = [clips.load(i) for i in range(start, min(start + batch_size, len(clips)))]
            if i3d is not None:
                fvd_feats.append(i3d.features(batch, batch_size=batch_size))
            if inception is not None:
                for clip in batch:
                    fid_feats.append(inception.features_of(clip.astype(np.float32) / 255.0, batch_size=fid_batch,
                                                           resize=fid_resize, progress=False))
            bar.update(len(batch))
    return (np.concatenate(fvd_feats) if fvd_feats else None, np.concatenate(fid_feats) if fid_feats else None)


def run_video(args) -> dict:
    from genxd_jax.evaluation.frechet import frechet_distance

    metrics = set(args.metrics)
    i3d = inception = None
    weights = {}
    if "fvd" in metrics:
        from genxd_jax.evaluation.i3d import load_i3d

        weights["i3d"] = _require(args.i3d, "--i3d", "I3D")
    if "fid" in metrics:
        weights["inception"] = _require(args.inception, "--inception", "Inception")
    gen = ClipFolder(args.generated, "generated", args.frames, args.size, args.max_clips)
    ref = ClipFolder(args.reference, "reference", args.frames, args.size, args.max_clips)
    for folder in (gen, ref):
        if len(folder) < 2:
            raise EvaluationError(f"--{folder.what}: {len(folder)} clip(s); FID/FVD need at least 2 per set")
    gen.load(0), ref.load(0)  # fixes and compares the clip lengths before any network runs
    if gen.length != ref.length:
        raise EvaluationError(f"mismatched clip lengths: generated clips ({gen.paths[0]}) have {gen.length} "
                              f"frames, reference clips ({ref.paths[0]}) {ref.length}; use --frames N")
    if "fvd" in metrics:
        i3d = load_i3d(weights["i3d"], resize=args.fvd_resize, size=args.fvd_size)
    if "fid" in metrics:
        from genxd_jax.evaluation import load_inception

        inception = load_inception(weights["inception"])
    kw = dict(batch_size=args.batch_size, fid_batch=args.fid_batch_size, fid_resize=args.fid_resize,
              progress=not args.no_progress)
    fvd_g, fid_g = video_features(gen, i3d, inception, desc="generated clips", **kw)
    fvd_r, fid_r = video_features(ref, i3d, inception, desc="reference clips", **kw)
    report = {"protocol": "video", "name": args.name, "generated": str(args.generated),
              "reference": str(args.reference), "num_generated": len(gen), "num_reference": len(ref),
              "frames": gen.length, "size": args.size or "as stored", "weights": weights}
    if fvd_g is not None:
        report.update(fvd=frechet_distance(fvd_g, fvd_r), fvd_resize=args.fvd_resize, fvd_size=args.fvd_size)
    if fid_g is not None:
        report.update(fid=frechet_distance(fid_g, fid_r), fid_resize=args.fid_resize,
                      fid_images=[len(fid_g), len(fid_r)])
    return report


def video_table(report: dict) -> str:
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| Method | FID ↓ | FVD ↓ |", "|---|---|---|",
             f"| {report['name']} | {fmt(report.get('fid'))} | {fmt(report.get('fvd'))} |"]
    lines += [f"| {n} (paper, Table 2) | {a:.2f} | {b:.2f} |" for n, a, b in PAPER_TABLE2]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- clip-i


def render_orbit(ply, num_views: int, elevation: float, radius: float, size: int, fov: float,
                 background) -> np.ndarray:
    """`num_views` renders (V, size, size, 3) in [0, 1] of a 3D-GS `.ply` on an orbit around the origin."""
    from genxd_jax.evaluation.fewview import render_views
    from genxd_jax.geometry.cameras import intrinsics_matrix
    from genxd_jax.geometry.trajectories import orbit_trajectory
    from genxd_jax.lift.ply import load_ply

    try:
        g = load_ply(ply)
    except (OSError, ValueError) as e:
        raise EvaluationError(f"--ply {ply}: {e}") from e
    c2w = orbit_trajectory(num_views, elevation, (0.0, 360.0), radius)
    f = 0.5 / np.tan(np.deg2rad(fov) / 2.0)
    return render_views(g, c2w, intrinsics_matrix(f, f), size, size, background)


def run_clip_i(args) -> dict:
    from genxd_jax.evaluation.clip import clip_similarity, load_clip

    weights = _require(args.clip, "--clip", "CLIP")
    if bool(args.views) == bool(args.ply):
        raise EvaluationError("clip-i: give exactly one of --views (a folder of images or a video) and --ply")
    reference = read_image(args.reference) if pathlib.Path(args.reference).is_file() else None
    if reference is None:
        raise EvaluationError(f"--reference {args.reference}: no such image")
    if args.views:
        src = pathlib.Path(args.views)
        if not src.exists():
            raise EvaluationError(f"--views {src}: no such folder or video")
        views = read_frames(src) if (src.is_file() or any(src.iterdir())) else None
        if views is None:
            raise EvaluationError(f"--views {src}: empty folder")
        views = views.astype(np.float32) / 255.0
    else:
        views = render_orbit(args.ply, args.orbit_views, args.elevation, args.radius, args.render_size,
                             args.fov, (1.0, 1.0, 1.0) if args.white_background else (0.0, 0.0, 0.0))
    clip = load_clip(weights, config=args.clip_config)
    ref_emb = np.asarray(clip(reference.astype(np.float32)[None] / 255.0))[0]
    emb = clip.embed(views, batch_size=args.batch_size, progress=not args.no_progress)
    cos = emb.astype(np.float64) @ ref_emb / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_emb))
    return {"protocol": "clip-i", "table": 6 if args.protocol == "3d" else 3, "name": args.name,
            "clip_i": 100.0 * clip_similarity(ref_emb, emb), "per_view_cosine": [float(c) for c in cos],
            "num_views": len(emb), "reference": str(args.reference),
            "views": str(args.views or args.ply), "weights": weights,
            "clip_config": dataclasses.asdict(clip.config)}


def clip_table(report: dict) -> str:
    paper = PAPER_TABLE6 if report["table"] == 6 else PAPER_TABLE3
    lines = ["| Method | CLIP-I ↑ |", "|---|---|", f"| {report['name']} | {report['clip_i']:.2f} |"]
    lines += [f"| {n} (paper, Table {report['table']}) | {v:.2f} |" for n, v in paper]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genxd_jax.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = argparse.ArgumentDefaultsHelpFormatter

    v = sub.add_parser("video", help="FID and FVD between generated and reference clips (Table 2)",
                       formatter_class=d)
    v.add_argument("--generated", required=True, help="folder of generated clips (videos or frame folders)")
    v.add_argument("--reference", required=True, help="folder of reference clips")
    v.add_argument("--i3d", help="I3D weights (safetensors; convert_metrics i3d)")
    v.add_argument("--inception", help="FID Inception weights (safetensors; convert_metrics inception)")
    v.add_argument("--metrics", nargs="+", choices=("fid", "fvd"), default=["fid", "fvd"])
    v.add_argument("--frames", type=int, default=None,
                   help="use the first N frames of each clip (default: all; all clips must then be equally long)")
    v.add_argument("--size", type=int, default=256, help="frames resized + centre-cropped to this (0: as stored)")
    v.add_argument("--max-clips", type=int, default=None, help="use the first N clips of each folder")
    v.add_argument("--batch-size", type=int, default=8, help="clips per I3D call")
    v.add_argument("--fid-batch-size", type=int, default=50, help="frames per Inception call")
    v.add_argument("--fid-resize", default="pytorch", choices=("pytorch", "tf1", "clean"))
    v.add_argument("--fvd-resize", default="tf1", choices=("tf1", "bilinear"))
    v.add_argument("--fvd-size", type=int, default=224,
                   help="I3D input size (224 for the released weights; smaller only for tests)")
    v.add_argument("--name", default="GenXD", help="row label in the table")
    v.add_argument("--output", required=True, help="folder for report.json and table.md")
    v.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("clip-i", help="CLIP-I between a reference image and views or frames (Tables 6, 3)",
                       formatter_class=d)
    c.add_argument("--reference", required=True, help="the reference (input) image")
    c.add_argument("--views", help="folder of rendered views / frames, or a video")
    c.add_argument("--ply", help="a 3D-GS .ply to render on an orbit instead of --views")
    c.add_argument("--orbit-views", type=int, default=7, help="views rendered on the orbit (Table 6: 7)")
    c.add_argument("--elevation", type=float, default=0.0, help="orbit elevation, degrees")
    c.add_argument("--radius", type=float, default=2.0, help="orbit radius, scene units")
    c.add_argument("--fov", type=float, default=49.1, help="vertical field of view of the renders, degrees")
    c.add_argument("--render-size", type=int, default=256, help="render resolution (square)")
    c.add_argument("--white-background", action="store_true")
    c.add_argument("--clip", help="CLIP weights: HF model.safetensors or a convert_metrics clip file")
    c.add_argument("--clip-config", help="HF config.json for --clip (default: the one next to it)")
    c.add_argument("--protocol", choices=("3d", "4d"), default="3d",
                   help="3d: Table 6 (orbit views of a lifted object); 4d: Table 3 (frames of a 4D clip)")
    c.add_argument("--batch-size", type=int, default=16)
    c.add_argument("--name", default="GenXD", help="row label in the table")
    c.add_argument("--output", required=True, help="folder for report.json and table.md")
    c.add_argument("--no-progress", action="store_true")

    f = sub.add_parser("fewview", help="the ReconFusion few-view 3D protocol (Table 4)")
    try:
        from genxd_jax.evaluation import fewview
    except ImportError as e:  # the module is optional until the 3D lifting work lands
        f.set_defaults(_fewview_error=str(e))
    else:
        fewview.add_arguments(f)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "video":
            report = run_video(args)
            table = video_table(report)
        elif args.command == "clip-i":
            report = run_clip_i(args)
            table = clip_table(report)
        else:
            if getattr(args, "_fewview_error", None):
                raise EvaluationError(f"the fewview protocol is unavailable: {args._fewview_error}")
            from genxd_jax.evaluation import fewview

            report = fewview.run(args)
            table = report.get("table") or (fewview.markdown_table(report) if hasattr(fewview, "markdown_table")
                                             else "")
            if getattr(args, "report", None) and table:
                _write_atomic(pathlib.Path(args.report).with_suffix(".md"), table + "\n")
            print(table)
            return 0
    except (EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # CheckpointError and bad-input errors of the metric modules
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_outputs(args.output, report, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
