"""Toy reproduction of paper Table 4 (few-view 3D): 3D-GS on 3 input views alone vs + GenXD's views.

On held-out procedural scenes (the 3D family ``genxd_jax.data.synthetic`` seeded with
``EVAL_SCENE_SEED_OFFSET``, never seen in training), each scene a 120° arc of an orbit (``--arc-views`` views,
15° apart by default):

- inputs: 3 views evenly spaced over the arc (first, middle, last); test: every other view on the arc
  (``genxd_jax.evaluation.fewview.default_split``);
- "3D-GS": ``fit_scene`` on the 3 inputs alone;
- "3D-GS + GenXD": the official B-spline path through the inputs (``--path-frames`` views), generated group
  by group with the nearest inputs as context by the tiny model trained on the procedural data (a training
  workdir: EMA parameters of its latest checkpoint, the pool8 autoencoder), then ``fit_scene`` on inputs +
  generated views;
- PSNR / SSIM of both on the test views (``evaluate_fewview``), plus the same metrics of the generated views
  themselves against the ground truth renders at the same cameras (how good the model's views are).

``--single-view`` also times the full single-view setting once: ``python -m genxd_jax.reconstruct --image``
with 2000 fit iterations (generation with the given released-layout ``--checkpoint``).

    python benchmarks/fewview_toy.py --workdir runs/tiny_learn --num-scenes 4 --iterations 1000 \\
        --output benchmarks/results/fewview_toy.json
    python benchmarks/fewview_toy.py --single-view --checkpoint ../shared/fixtures/genxd-tiny-a --size 64
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def toy_scenes(num_scenes: int, size: int, arc_views: int, orbit_views: int = 24) -> list[dict]:
    """Held-out 3D procedural scenes: the first ``arc_views`` views of an ``orbit_views``-view orbit."""
    from genxd_jax.data.pipeline import EVAL_SCENE_SEED_OFFSET
    from genxd_jax.data.synthetic import make_synthetic_scene

    out = []
    for i in range(num_scenes):
        p = make_synthetic_scene("3d", EVAL_SCENE_SEED_OFFSET, i, size=size, num_frames=orbit_views)
        frames = np.stack([p.render(t) for t in range(arc_views)])
        out.append({"name": f"toy3d_{i}", "images": frames.astype(np.float32) / 255.0,
                    "c2w": p.c2w[:arc_views], "intrinsics": p.intrinsics()[:arc_views], "params": p})
    return out


def generated_quality(scene: dict, generated: np.ndarray, c2w: np.ndarray) -> dict:
    """PSNR / SSIM of generated views against ground-truth renders at the same cameras."""
    import dataclasses

    from genxd_jax.evaluation.image_metrics import psnr, ssim

    p = dataclasses.replace(scene["params"], c2w=np.asarray(c2w))
    truth = np.stack([p.render(t) for t in range(len(c2w))]).astype(np.float32) / 255.0
    return {"psnr": float(np.mean(psnr(generated, truth))), "ssim": float(np.mean(ssim(generated, truth)))}


def run_toy(args) -> dict:
    from genxd_jax.evaluation.fewview import ROWS, evaluate_scene, markdown_table, scene_arrays

    start = time.perf_counter()
    from genxd_jax.pipeline import pipeline_from_workdir

    pipe, config, step, _ = pipeline_from_workdir(args.workdir)
    size = args.size or int(config.data.resolution)
    scenes = toy_scenes(args.num_scenes, size, args.arc_views)
    from genxd_jax.lift.fit_config import get_config

    fit_cfg = get_config(args.fit_config)
    fit_cfg.capacity = args.capacity
    fit_cfg.init.num_random = args.num_random
    # 32² images have only 4 tiles of 16²: let one tile hold every Gaussian (no overflow, nothing dropped)
    fit_cfg.render.tile_capacity = max(int(fit_cfg.render.tile_capacity), args.capacity)
    rows, quality = [], []
    for scene in scenes:
        t0 = time.perf_counter()
        row = evaluate_scene(
            scene_arrays({k: scene[k] for k in ("name", "images", "c2w", "intrinsics")}), pipe,
            num_inputs=3, iterations=args.iterations, path_frames=args.path_frames, frames=args.frames,
            num_context=args.num_context, num_inference_steps=args.steps, guidance_scale=args.guidance,
            normalise_scale=True, seed=args.seed, progress=not args.no_progress,
            fit_kwargs={"config": fit_cfg})
        quality.append(generated_quality(scene, row.pop("generated"), row.pop("generated_c2w")))
        row["generated_views_vs_truth"] = quality[-1]
        rows.append(row)
        print(f"{scene['name']}: " + ", ".join(f"{n} {row[n]['psnr']:.2f} dB / {row[n]['ssim']:.3f}" for n in ROWS)
              + f"; generated views {quality[-1]['psnr']:.2f} dB ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    mean = {n: {m: float(np.mean([r[n][m] for r in rows])) for m in ("psnr", "ssim")} for n in ROWS}
    report = {"dataset": "Toy", "mean": mean, "scenes": rows, "num_scenes": len(rows),
              "generated_views_vs_truth": {m: float(np.mean([q[m] for q in quality])) for m in ("psnr", "ssim")},
              "settings": {k: v for k, v in vars(args).items() if k not in ("func",)} | {"size": size,
                                                                                           "checkpoint_step": step},
              "machine": f"{platform.machine()} {os.cpu_count()} CPU, jax {__import__('jax').__version__}",
              "date": time.strftime("%Y-%m-%d"), "wall_s": round(time.perf_counter() - start, 1)}
    report["table"] = markdown_table(report)
    print(report["table"])
    return report


def run_single_view(args) -> dict:
    """Times ``python -m genxd_jax.reconstruct --image`` at the paper's setting (12 frames per call, 25 steps,
    one view between neighbouring anchors: 24 views, 2000 fit iterations; the ``single_view`` fit recipe)."""
    from PIL import Image

    from genxd_jax.data.synthetic import make_synthetic_scene

    with tempfile.TemporaryDirectory() as tmp:
        p = make_synthetic_scene("3d", 1_000_003, 0, size=args.size or 256, num_frames=24)
        Image.fromarray(p.render(0)).save(f"{tmp}/input.png")
        cmd = [sys.executable, "-m", "genxd_jax.reconstruct", "--image", f"{tmp}/input.png", "--checkpoint",
               args.checkpoint, "--output", f"{tmp}/scene", "--size", str(args.size or 256), "--iterations",
               str(args.single_view_iterations), "--capacity", str(args.single_view_capacity), "--elevation", "20",
               "--radius", "3.7", "--no-progress"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"reconstruct failed:\n{done.stderr[-3000:]}")
        metrics = json.loads(done.stdout)
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "metrics": metrics}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="runs/tiny_learn", help="training workdir of the toy model")
    p.add_argument("--num-scenes", type=int, default=4)
    p.add_argument("--size", type=int, default=None, help="default: the model's training resolution")
    p.add_argument("--arc-views", type=int, default=9, help="views on the 120° arc (15° apart)")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--fit-config", default="few_view", help="genxd_jax.lift.fit_config variant")
    p.add_argument("--capacity", type=int, default=8192, help="Gaussian slots")
    p.add_argument("--num-random", type=int, default=2000,
                   help="random initial points when triangulation finds too few (32² images: ~2 per pixel)")
    p.add_argument("--path-frames", type=int, default=8)
    p.add_argument("--frames", type=int, default=4, help="frames per generation call (the toy model's F)")
    p.add_argument("--num-context", type=int, default=2, help="the toy model was trained with ≤ 2 contexts")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single-view", action="store_true", help="time reconstruct --image instead")
    p.add_argument("--checkpoint", default=None, help="released-layout checkpoint for --single-view")
    p.add_argument("--single-view-iterations", type=int, default=2000)
    p.add_argument("--single-view-capacity", type=int, default=16384)
    p.add_argument("--output", default=None, help="write the report JSON here")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.single_view:
        if not args.checkpoint:
            p.error("--single-view needs --checkpoint")
        report = run_single_view(args)
        print(json.dumps(report, indent=1))
    else:
        report = run_toy(args)
    if args.output:
        path = pathlib.Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=1, default=float))
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
