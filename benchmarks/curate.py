"""Curation throughput: seconds per stage for a 40-frame clip at 256 px, and clips/hour with ``--jobs``.

    python benchmarks/curate.py [--frames 40] [--size 256] [--clips 4] [--jobs 2] [--depth-model]
        [--variant small] [--out results.json]

Renders procedural clips (``genxd_jax.curation.synthetic``: a textured room, static boxes, one moving box;
341×256, 16:9-ish like the released clips' shorter side 256) and curates them through
:class:`genxd_jax.curation.pipeline.ClipCurator` exactly as ``python -m genxd_jax.curate`` does:

1. one clip with the defaults (motion segmenter, self-calibrated SfM, no depth source → sparse-interpolated
   depth): the per-stage seconds from its ``meta.json``;
2. with ``--depth-model``: the same clip's depth stage again with Depth Anything V2 (random weights of
   ``--variant``; the timing does not depend on the weights) as the depth source;
3. ``--clips`` clips (different seeds) as a batch with ``--jobs`` processes: wall time → clips/hour.

The per-stage times depend on the load of the machine; the script prints the load average next to them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time

import cv2

from genxd_jax.curation import pipeline
from genxd_jax.curation.config import default_curation_config
from genxd_jax.curation.frames import ClipSource
from genxd_jax.curation.synthetic import render_video


def write_clip(folder: str, *, frames: int, size: int, seed: int) -> None:
    video = render_video(num_frames=frames, height=size, width=int(round(size * 4 / 3)), seed=seed,
                         camera_step=0.05)
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(video.frames):
        cv2.imwrite(os.path.join(folder, f"{i:05d}.png"), frame[..., ::-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--depth-model", action="store_true", help="also time Depth Anything V2 (random weights)")
    parser.add_argument("--variant", default="small")
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "frames": args.frames, "size": args.size, "load_before": os.getloadavg()}
    cfg = default_curation_config()
    cfg.size = args.size
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(max(1, args.clips)):
            write_clip(os.path.join(tmp, "in", f"clip{c}"), frames=args.frames, size=args.size, seed=c)
        clip = ClipSource("clip0", os.path.join(tmp, "in", "clip0"), "frames")
        start = time.perf_counter()
        meta = pipeline.ClipCurator(clip, os.path.join(tmp, "single"), cfg, pipeline.CurateOptions(),
                                    resume=False).run()
        report["defaults"] = {"status": meta["status"], "reason": meta["reason"], "stages_s": meta["timings"],
                              "total_s": round(time.perf_counter() - start, 2),
                              "sfm_attempts": len(meta["sfm"]["attempts"]) if meta["sfm"] else None,
                              "motion_strength": meta["motion_strength"]}
        print(json.dumps(report["defaults"], indent=1))
        if args.depth_model:
            from genxd_jax.curation.depth_anything import VARIANTS, DepthAnythingV2, build_depth_anything

            pipeline._DEPTH_MODELS["da2:random"] = DepthAnythingV2(build_depth_anything(VARIANTS[args.variant]))
            manifest = os.path.join(tmp, "single", "clip0", ".work", "manifest.json")
            with open(manifest) as f:
                stages = json.load(f)["stages"]
            for stage in ("depth", "track"):
                stages.pop(stage, None)
            with open(manifest, "w") as f:
                json.dump({"stages": stages}, f)
            os.remove(os.path.join(tmp, "single", "clip0", "meta.json"))
            start = time.perf_counter()
            meta = pipeline.ClipCurator(clip, os.path.join(tmp, "single"), cfg,
                                        pipeline.CurateOptions(depth_model="da2:random"), resume=True).run()
            report["depth_model"] = {"variant": args.variant, "depth_s": meta["timings"]["depth"],
                                     "depth_s_per_frame": meta["timings"]["depth"] / args.frames,
                                     "rerun_total_s": round(time.perf_counter() - start, 2)}
            print(json.dumps(report["depth_model"], indent=1))
        if args.clips > 0:
            clips = [ClipSource(f"clip{c}", os.path.join(tmp, "in", f"clip{c}"), "frames") for c in range(args.clips)]
            start = time.perf_counter()
            metas = pipeline.curate_batch(clips, os.path.join(tmp, "batch"), cfg, pipeline.CurateOptions(),
                                          jobs=args.jobs)
            wall = time.perf_counter() - start
            report["batch"] = {"clips": args.clips, "jobs": args.jobs, "wall_s": round(wall, 1),
                               "clips_per_hour": round(3600 * args.clips / wall, 1),
                               "kept": sum(m.get("status") == "kept" for m in metas)}
            print(json.dumps(report["batch"], indent=1))
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
