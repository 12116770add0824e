"""The paper's few-view 3D protocol (Table 4): 3D-GS on 3 input views, with and without GenXD's views.

Per scene:

1. **Split.** ``num_inputs`` input views and the test views. With a split (``split={"train_ids": [...],
   "test_ids": [...]}`` in an in-memory scene, or a JSON file mapping scene names to such dicts, the
   ReconFusion ``train_test_split_<n>`` layout) it is used as given. Without one the rule is: the inputs are
   ``num_inputs`` views evenly spaced over the capture order, first and last included
   (``round(linspace(0, N − 1, num_inputs))``); the test views are every ``test_every``-th of the remaining
   views strictly between the first and the last input (so the test views are interpolations, where the
   official B-spline path puts the generated views, as in the ReconFusion RealEstate10K protocol).
2. **Generation** (when a pipeline is given): the official smoothing B-spline through the input cameras
   (:func:`genxd_jax.geometry.spline_trajectory`, ``path_frames`` views, optional shifts), generated in groups
   of F − V with the V nearest inputs as context (:func:`genxd_jax.lift.planning.generate_views`).
3. **Fitting.** 3D-GS (:func:`genxd_jax.lift.fit_scene`) on the inputs alone (row "3D-GS") and on the inputs
   + the generated views (row "3D-GS + GenXD"), same seed and iterations.
4. **Scores** on the test views: PSNR (dB), SSIM (:mod:`genxd_jax.evaluation.image_metrics`) and LPIPS when a
   callable ``lpips(a, b) -> (N,)`` is given (e.g. ``genxd_jax.evaluation.load_lpips``), averaged per scene
   and then over scenes (the paper's per-dataset means).

:func:`evaluate_fewview` returns a report dict with the per-scene rows, the means and ``"table"``, a Markdown
table shaped like paper Table 4. ``add_arguments`` / ``run`` are the ``fewview`` subcommand of
``python -m genxd_jax.evaluate``.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

ROWS = ("3D-GS", "3D-GS + GenXD")

# ----------------------------------------------------------------------------------------------------------
# Rendering and scoring a fitted scene.

_RENDER_CACHE: dict = {}
MAX_TILE_CAPACITY = 16384


def render_views(g, c2w, intrinsics, height: int, width: int, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Renders Gaussians ``g`` at cameras c2w (V, 4, 4) with normalised intrinsics (3, 3) or (V, 3, 3):
    (V, H, W, 3) float32 in [0, 1] (clipped).

    The per-tile capacity is the Gaussians' capacity (rounded up to 32, at most 16384), so a small image whose
    few tiles hold every Gaussian drops nothing; an overflow that remains is reported on stderr. One compiled
    program per (H, W, capacity).
    """
    import jax
    import jax.numpy as jnp

    from genxd_jax.lift import render

    c2w = np.asarray(c2w, np.float32)
    k = np.asarray(intrinsics, np.float32)
    k = np.broadcast_to(k, (len(c2w), 3, 3)) if k.ndim == 2 else k
    tile_capacity = min(-(-int(g.capacity) // 32) * 32, MAX_TILE_CAPACITY)
    key = (height, width, tile_capacity)
    fn = _RENDER_CACHE.get(key)
    if fn is None:
        def one(g, c, kk, bg):
            out = render(g, c, kk, height, width, bg, tile_capacity=tile_capacity)
            return out.rgb, out.overflow

        fn = _RENDER_CACHE[key] = jax.jit(one)
    bg = jnp.asarray(background, jnp.float32)
    frames, overflowed = [], 0
    for i in range(len(c2w)):
        rgb, overflow = fn(g, c2w[i], k[i], bg)
        frames.append(np.clip(np.asarray(rgb), 0.0, 1.0))
        overflowed += int(overflow)
    if overflowed:
        print(f"render_views: {overflowed} of {len(c2w)} renders overflowed a tile's capacity "
              f"({tile_capacity}); the farthest Gaussians of those tiles were dropped", file=sys.stderr)
    return np.stack(frames)


def score_views(g, images, c2w, intrinsics, *, lpips=None) -> dict:
    """Renders ``g`` at the cameras of ``images`` (V, H, W, 3) and scores them: mean ``psnr`` (dB), ``ssim``,
    ``lpips`` (when a callable is given) and the per-view ``psnr_per_view``."""
    from genxd_jax.evaluation.image_metrics import psnr, ssim

    images = np.asarray(images, np.float32)
    if len(images) == 0:
        raise ValueError("score_views needs at least one view")
    renders = render_views(g, c2w, intrinsics, images.shape[1], images.shape[2])
    p = np.asarray(psnr(renders, images))
    out = {"psnr": float(p.mean()), "ssim": float(np.asarray(ssim(renders, images)).mean()),
           "psnr_per_view": [round(float(x), 3) for x in p]}
    if lpips is not None:
        out["lpips"] = float(np.asarray(lpips(renders, images)).mean())
    return out


# ----------------------------------------------------------------------------------------------------------
# Scenes and splits.


def default_split(num_views: int, num_inputs: int = 3, test_every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, test ids) by the documented rule (module docstring, step 1)."""
    if num_inputs < 2 or num_views < num_inputs + 1:
        raise ValueError(f"a few-view split needs ≥ 2 inputs and at least one more view; got {num_inputs} "
                         f"inputs of {num_views} views")
    inputs = np.unique(np.round(np.linspace(0, num_views - 1, num_inputs)).astype(np.int64))
    if len(inputs) < num_inputs:
        raise ValueError(f"{num_views} views are too few for {num_inputs} distinct inputs")
    between = np.setdiff1d(np.arange(inputs[0] + 1, inputs[-1]), inputs)
    test = between[:: max(int(test_every), 1)]
    if len(test) == 0:
        raise ValueError(f"no test view lies between the inputs {inputs.tolist()}")
    return inputs, test


def scene_arrays(scene, size: int | None = None) -> dict:
    """A ``genxd_jax.data.Scene`` or an in-memory dict -> ``{"name", "images" (N, S, S, 3) float32 [0, 1],
    "c2w" (N, 4, 4), "intrinsics" (N, 3, 3), "split" (or None)}``.

    In-memory dicts need ``images``, ``c2w``, ``intrinsics`` (normalised); frames of a Scene are loaded,
    resized and centre-cropped to ``size`` (intrinsics adjusted accordingly), default: their own size if
    square.
    """
    from genxd_jax.data.images import load_frame
    from genxd_jax.data.scene import Scene
    from genxd_jax.geometry.cameras import validate_c2w, validate_intrinsics

    if isinstance(scene, Scene):
        frames = [load_frame(f) for f in scene.frames]
        name, c2w, k, split = scene.name, scene.c2w, scene.intrinsics, None
        images, k = _square(frames, size, np.asarray(k))
    elif isinstance(scene, dict):
        missing = {"images", "c2w", "intrinsics"} - set(scene)
        if missing:
            raise ValueError(f"scene {scene.get('name', '?')}: missing fields {sorted(missing)}")
        images = np.asarray(scene["images"])
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        name, c2w, k, split = scene.get("name", "scene"), scene["c2w"], scene["intrinsics"], scene.get("split")
    else:
        raise TypeError(f"a scene must be a genxd_jax.data.Scene or a dict, got {type(scene).__name__}")
    c2w = validate_c2w(c2w, name=f"scene {name}: c2w")
    k = validate_intrinsics(k, name=f"scene {name}: intrinsics")
    if k.ndim == 2:
        k = np.broadcast_to(k, (len(c2w), 3, 3))
    if images.ndim != 4 or len(images) != len(c2w) or len(k) != len(c2w):
        raise ValueError(f"scene {name}: {images.shape} images, {len(c2w)} poses, {len(k)} intrinsics disagree")
    return {"name": name, "images": images, "c2w": c2w, "intrinsics": np.asarray(k), "split": split}


def _square(frames, size, k):
    """uint8 frames (H, W, 3) -> (float images (N, S, S, 3), adjusted intrinsics), resize-to-cover + crop."""
    from PIL import Image

    from genxd_jax.generate import resize_and_crop
    from genxd_jax.reconstruct import adjust_intrinsics

    h, w = frames[0].shape[:2]
    s = size or (h if h == w else min(h, w))
    out, ks = [], []
    for f, kk in zip(frames, k, strict=True):
        if f.shape[:2] == (s, s):
            img, factors = f, (1.0, 1.0)
        else:
            img, factors = resize_and_crop(np.asarray(Image.fromarray(f)), s)
        out.append(img.astype(np.float32) / 255.0)
        ks.append(adjust_intrinsics(kk, factors))
    return np.stack(out), np.stack(ks)


# ----------------------------------------------------------------------------------------------------------
# The protocol.


def evaluate_scene(
    scene: dict,
    pipe=None,
    *,
    num_inputs: int = 3,
    test_every: int = 1,
    iterations: int = 2000,
    path_frames: int = 18,
    shift_x=None,
    shift_z=None,
    frames: int = 12,
    num_context: int = 3,
    num_inference_steps: int = 25,
    guidance_scale: float = 3.0,
    normalise_scale: bool = False,
    seed: int = 0,
    lpips=None,
    fit_kwargs: dict | None = None,
    progress: bool = False,
) -> dict:
    """One scene (as :func:`scene_arrays` returns it) through the protocol; returns its report row."""
    from genxd_jax.geometry.spline import spline_trajectory
    from genxd_jax.lift.fit import fit_scene
    from genxd_jax.lift.planning import generate_views

    images, c2w, k = scene["images"], scene["c2w"], scene["intrinsics"]
    if scene.get("split"):
        inputs = np.asarray(scene["split"]["train_ids"], np.int64)
        test = np.asarray(scene["split"]["test_ids"], np.int64)
        if len(inputs) != num_inputs:
            raise ValueError(f"scene {scene['name']}: the split has {len(inputs)} inputs, not {num_inputs}")
    else:
        inputs, test = default_split(len(images), num_inputs, test_every)
    fit_kwargs = dict(fit_kwargs or {})
    row = {"name": scene["name"], "inputs": inputs.tolist(), "test": test.tolist()}

    start = time.perf_counter()
    g = fit_scene(images[inputs], c2w[inputs], k[inputs], iterations=iterations, seed=seed, progress=progress,
                  **fit_kwargs)
    row[ROWS[0]] = {**score_views(g, images[test], c2w[test], k[test], lpips=lpips),
                    "fit_s": round(time.perf_counter() - start, 2)}
    if pipe is not None:
        targets = spline_trajectory(c2w[inputs], path_frames, shift_x=shift_x, shift_z=shift_z)
        start = time.perf_counter()
        generated = generate_views(pipe, images[inputs], c2w[inputs], targets, k[inputs], frames=frames,
                                   num_context=num_context, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, seed=seed, normalise_scale=normalise_scale,
                                   progress=progress)
        gen_s = time.perf_counter() - start
        all_images = np.concatenate([images[inputs], generated])
        all_c2w = np.concatenate([c2w[inputs], targets])
        all_k = np.concatenate([k[inputs], np.broadcast_to(k[inputs][0], (len(targets), 3, 3))])
        start = time.perf_counter()
        g2 = fit_scene(all_images, all_c2w, all_k, iterations=iterations, seed=seed, progress=progress,
                       **fit_kwargs)
        row[ROWS[1]] = {**score_views(g2, images[test], c2w[test], k[test], lpips=lpips),
                        "fit_s": round(time.perf_counter() - start, 2), "generation_s": round(gen_s, 2),
                        "num_generated": len(targets)}
        row["generated"] = generated
        row["generated_c2w"] = targets
    return row


def evaluate_fewview(
    scenes,
    pipe=None,
    *,
    num_inputs: int = 3,
    size: int | None = None,
    dataset: str = "scenes",
    lpips=None,
    splits: dict | None = None,
    progress: bool = True,
    **kwargs,
) -> dict:
    """The few-view protocol over ``scenes`` (``genxd_jax.data.Scene`` objects from ``read_scene`` or
    in-memory dicts, see :func:`scene_arrays`).

    Args:
      pipe: a GenXDPipeline, or None for the baseline row only.
      num_inputs: input views per scene (the paper: 3).
      size: square working size for Scene frames (in-memory dicts are used as given).
      dataset: the column-group name of the table (e.g. "Re10K").
      lpips: optional callable (a (N, H, W, 3), b) -> (N,) LPIPS distances.
      splits: optional {scene name: {"train_ids": [...], "test_ids": [...]}}.
      **kwargs: forwarded to :func:`evaluate_scene` (iterations, path_frames, frames, steps, ...).

    Returns:
      ``{"dataset", "scenes": [per-scene rows without images], "mean": {row: {psnr, ssim[, lpips]}},
      "table": Markdown}``.
    """
    from tqdm import tqdm

    rows = []
    for scene in tqdm(list(scenes), desc="few-view scenes", unit="scene", disable=not progress):
        arrays = scene_arrays(scene, size)
        if splits and arrays["name"] in splits:
            arrays["split"] = splits[arrays["name"]]
        row = evaluate_scene(arrays, pipe, num_inputs=num_inputs, lpips=lpips, **kwargs)
        row.pop("generated", None)
        row.pop("generated_c2w", None)
        rows.append(row)
    if not rows:
        raise ValueError("evaluate_fewview needs at least one scene")
    mean = {}
    for name in ROWS:
        got = [r[name] for r in rows if name in r]
        if got:
            mean[name] = {m: float(np.mean([x[m] for x in got])) for m in ("psnr", "ssim", "lpips") if m in got[0]}
    report = {"dataset": dataset, "num_scenes": len(rows), "num_inputs": num_inputs, "scenes": rows,
              "mean": mean}
    report["table"] = markdown_table(report)
    return report


def markdown_table(report: dict) -> str:
    """Paper Table 4's layout for one dataset: Method | PSNR↑ | SSIM↑ | LPIPS↓ (— where not measured)."""
    d = report["dataset"]
    lines = [f"| Method | {d} PSNR↑ | {d} SSIM↑ | {d} LPIPS↓ |", "|---|---|---|---|"]
    for name in ROWS:
        m = report["mean"].get(name)
        if m is None:
            lines.append(f"| {name} | not run | not run | not run |")
            continue
        lp = f"{m['lpips']:.3f}" if "lpips" in m else "—"
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.3f} | {lp} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# The `fewview` subcommand of `python -m genxd_jax.evaluate`.


def add_arguments(parser) -> None:
    """Adds the few-view protocol's options to an argparse (sub)parser."""
    parser.add_argument("--scenes", nargs="+", required=True,
                        help="scenes as FORMAT:PATH for genxd_jax.data.read_scene, e.g. re10k:/data/re10k/abc "
                             "or synthetic:3d/1000/0")
    parser.add_argument("--checkpoint", help="GenXD checkpoint (released layout); omit for the baseline only")
    parser.add_argument("--dataset", default="scenes", help="dataset name for the table")
    parser.add_argument("--split", help="JSON {scene name: {train_ids, test_ids}} (default: the documented rule)")
    parser.add_argument("--num-inputs", type=int, default=3)
    parser.add_argument("--test-every", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--fit-config", default="few_view",
                        help="genxd_jax.lift.fit_config variant (reference, few_view, single_view, tiny)")
    parser.add_argument("--capacity", type=int, default=None, help="Gaussian slots (overrides the fit config)")
    parser.add_argument("--path-frames", type=int, default=18)
    parser.add_argument("--shift-x", type=float, nargs="*", default=None)
    parser.add_argument("--shift-z", type=float, nargs="*", default=None)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--num-context", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--normalise-scale", action="store_true")
    parser.add_argument("--lpips", metavar="WEIGHTS", default=None,
                        help="LPIPS safetensors weights (genxd_jax.evaluation.load_lpips) to also score LPIPS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", help="write the report JSON here (atomically)")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> dict:
    """Runs the protocol from parsed arguments; returns (and optionally writes) the report."""
    from genxd_jax.data import read_scene

    scenes = []
    for spec in args.scenes:
        fmt, sep, path = spec.partition(":")
        if not sep:
            raise ValueError(f"--scenes: {spec!r} is not FORMAT:PATH")
        scenes.append(read_scene(fmt, path, **({"size": args.size} if fmt == "synthetic" else {})))
    splits = None
    if args.split:
        try:
            splits = json.loads(pathlib.Path(args.split).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --split {args.split}: {e}") from e
    pipe = None
    if args.checkpoint:
        from genxd_jax.pipeline import GenXDPipeline

        pipe = GenXDPipeline.from_pretrained(args.checkpoint)
    lpips = None
    if args.lpips:
        from genxd_jax.evaluation import load_lpips

        lpips = load_lpips(args.lpips)
    from genxd_jax.lift.fit_config import get_config

    fit_cfg = get_config(args.fit_config)
    if args.capacity is not None:
        fit_cfg.capacity = int(args.capacity)
    report = evaluate_fewview(
        scenes, pipe, num_inputs=args.num_inputs, size=args.size, dataset=args.dataset, lpips=lpips,
        splits=splits, progress=not args.no_progress, test_every=args.test_every, iterations=args.iterations,
        path_frames=args.path_frames, shift_x=args.shift_x, shift_z=args.shift_z, frames=args.frames,
        num_context=args.num_context, num_inference_steps=args.steps, guidance_scale=args.guidance,
        normalise_scale=args.normalise_scale, seed=args.seed, fit_kwargs={"config": fit_cfg})
    if args.report:
        path = pathlib.Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(path)
    return report
