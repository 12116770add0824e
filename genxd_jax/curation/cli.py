"""``python -m genxd_jax.curate INPUT OUT_DIR [options]``: curate videos into CamVid-30K-style 4D clips.

INPUT is a video file, a folder of frames (sorted by name; one clip named after the folder), or a folder of
videos / frame folders (a batch, one clip each). Per clip, OUT_DIR/<clip>/ gets ``images/*.jpg``,
``0/{cameras,images,points3D}.bin`` + ``0/project.ini`` (readable by ``read_scene("camvid30k", ...)`` and COLMAP)
and ``meta.json`` (``motion_strength`` in eq. 4 × 100 units, per-object strengths and keypoint counts, the depth
source, ``status`` kept/rejected with the reason, per-stage timings).

User inputs (single clip: DIR/<frame stem>.*; batch: DIR/<clip>/<frame stem>.*, and a clip without its
DIR/<clip> folder falls back to the segmenter / depth model / no depth), at the input frames' resolution:
``--masks`` PNGs (0 = background, k > 0 = instance k, consistent over frames), ``--depth`` float32 (H, W) ``.npy``
maps (``--depth-kind depth`` = z-depth up to scale, ``disparity`` = ∝ 1/z). ``--intrinsics
FX,FY,CX,CY`` in input pixels, COLMAP convention (top-left pixel centre at 0.5, 0.5).

The command exits 0 when the batch completes, whatever each clip's status; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import sys

from genxd_jax.curation.config import default_curation_config
from genxd_jax.curation.frames import discover_clips
from genxd_jax.curation.pipeline import CurateOptions, curate_batch


def _intrinsics(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--intrinsics must be FX,FY,CX,CY numbers, got {text!r}") from err
    if len(values) != 4 or values[0] <= 0 or values[1] <= 0:
        raise argparse.ArgumentTypeError(f"--intrinsics must be FX,FY,CX,CY with positive focals, got {text!r}")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genxd_jax.curate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="video file, frame folder, or folder of videos/frame folders")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--masks", metavar="DIR", help="instance masks <frame stem>.png (replace the segmenter)")
    p.add_argument("--depth", metavar="DIR", help="dense relative depth maps <frame stem>.npy")
    p.add_argument("--depth-kind", choices=("depth", "disparity"), default="depth",
                   help="what --depth maps hold (default depth: z-depth up to scale)")
    p.add_argument("--intrinsics", type=_intrinsics, metavar="FX,FY,CX,CY",
                   help="known pinhole intrinsics in input pixels (kept fixed in SfM)")
    p.add_argument("--align", choices=("median", "lstsq"), default="median",
                   help="depth alignment: the paper's median scale+shift (eq. 2) or least squares")
    p.add_argument("--segmenter", choices=("motion", "none"), default="motion",
                   help="moving-object segmenter when --masks is not given")
    p.add_argument("--depth-model", metavar="da2:WEIGHTS",
                   help="Depth Anything V2 safetensors (when --depth is not given)")
    p.add_argument("--tracker", choices=("lk",), default="lk", help="keypoint tracker (pyramidal Lucas–Kanade)")
    p.add_argument("--min-motion", type=float, default=0.0, metavar="X",
                   help="reject clips whose motion strength (eq. 4 × 100) is below X (default 0: keep all)")
    p.add_argument("--size", type=int, default=256, help="shorter side of the written frames; 0 = input size")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="keep at most N frames (0 = all)")
    p.add_argument("--stride", type=int, default=1, metavar="S", help="keep every S-th input frame")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="clips curated in parallel processes")
    p.add_argument("--resume", action="store_true", help="skip finished clips and finished stages")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stride < 1 or args.jobs < 1 or args.max_frames < 0 or args.size < 0:
        parser.error("--stride and --jobs must be ≥ 1, --max-frames and --size ≥ 0")
    if args.depth_model is not None:
        if not args.depth_model.startswith("da2:"):
            parser.error(f"--depth-model must be da2:WEIGHTS, got {args.depth_model!r}")
        if not os.path.exists(args.depth_model[4:]):
            parser.error(f"--depth-model: weights {args.depth_model[4:]} do not exist")
        if importlib.util.find_spec("genxd_jax.curation.depth_anything") is None:
            parser.error("--depth-model: genxd_jax.curation.depth_anything is not available in this installation")
    for flag, folder in (("--masks", args.masks), ("--depth", args.depth)):
        if folder is not None and not os.path.isdir(folder):
            parser.error(f"{flag}: {folder} is not a directory")
    try:
        clips = discover_clips(args.input)
    except ValueError as err:
        parser.error(str(err))
    cfg = default_curation_config()
    cfg.size, cfg.stride, cfg.max_frames = args.size, args.stride, args.max_frames
    cfg.segmenter, cfg.align, cfg.min_motion = args.segmenter, args.align, args.min_motion
    batch = not (len(clips) == 1 and clips[0].path == os.path.normpath(args.input))
    opts = CurateOptions(masks=args.masks, depth=args.depth, depth_kind=args.depth_kind,
                         depth_model=args.depth_model, intrinsics=args.intrinsics, batch=batch)
    results = curate_batch(clips, args.out_dir, cfg, opts, jobs=args.jobs, resume=args.resume)
    counts = collections.Counter(r.get("status") for r in results)
    print(f"curated {len(results)} clip(s) into {args.out_dir}: {counts.get('kept', 0)} kept, "
          f"{counts.get('rejected', 0)} rejected")
    for r in results:
        if r.get("status") != "kept":
            print(f"  rejected {r.get('clip')}: {r.get('reason')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
