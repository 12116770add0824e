"""Dynamic (4D) splatting benchmark: the deforming fit's time per iteration and memory, and its quality.

Two parts (``benchmarks/splat.py --dynamic`` is this file; lift-core owns splat.py, so the 4D benchmark lives
here):

1. ``speed``: the fine-stage training step of :func:`genxd_jax.lift.fit_dynamic_scene` (HexPlane + MLP
   deformation, render, L1 + regularisers, Adam) on a procedural clip (:mod:`genxd_jax.lift.toy4d`) at
   ``--size`` (default 256²) with ``--capacity`` Gaussians: compile time, steady-state seconds per iteration
   (median of ``--iterations`` after one warm-up), XLA's memory analysis of the compiled step, and the process
   peak RSS.
2. ``quality``: the toy clip (T frames at ``--quality-size``, one orbiting camera per time) fitted by the 4D
   method (coarse + fine) and by a static 3D-GS with the same total iterations; mean PSNR on held-out
   (time, camera) pairs halfway between training frames.

Usage::

    python benchmarks/splat_dynamic.py [--size 256] [--capacity 4096] [--iterations 10]
                                       [--quality-size 48] [--frames 16] [--coarse 300] [--fine 1200]
                                       [--skip-speed] [--skip-quality] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def speed(args) -> dict:
    from genxd_jax.lift.deform import init_deform_mlp
    from genxd_jax.lift.fit4d import fine_learning_rates, make_fine_step, spec_from_config
    from genxd_jax.lift.fit4d_config import get_config
    from genxd_jax.lift.hexplane import aabb_from_points, init_hexplane
    from genxd_jax.lift.toy4d import make_toy_scene

    config = get_config(args.variant)
    config.coarse.capacity = args.capacity
    scene = make_toy_scene(max(1, args.capacity // 5))
    times = np.linspace(0.0, 1.0, 4)
    # the step's cost does not depend on the pixel values: random targets avoid a dense ground-truth render
    frames = np.random.default_rng(0).uniform(size=(len(times), args.size, args.size, 3)).astype(np.float32)
    c2w, k = np.stack([scene.camera(t) for t in times]), scene.intrinsics()
    g = scene.gaussians(0.5)
    spec = spec_from_config(config)
    params = {"gaussians": g.params(), "grid": init_hexplane(jax.random.PRNGKey(0), spec),
              "mlp": init_deform_mlp(jax.random.PRNGKey(1), spec.feature_dim, int(config.deform.width))}
    optimizer, step = make_fine_step(config, args.size, args.size)
    opt_state = optimizer.init(params)
    lrs = {n: jnp.float32(v) for n, v in fine_learning_rates(config, 2.0, 1000, 0).items()}
    batch = {"images": jnp.asarray(frames), "c2w": jnp.asarray(c2w, jnp.float32),
             "intrinsics": jnp.asarray(np.broadcast_to(k, (len(frames), 3, 3)), jnp.float32),
             "times": jnp.asarray(times, jnp.float32),
             "aabb": jnp.asarray(aabb_from_points(np.asarray(g.means), 0.1)), "view": jnp.int32(0),
             "sh_degree": jnp.int32(3), "learning_rates": lrs}
    t0 = time.perf_counter()
    compiled = step.lower(params, g.active, opt_state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    xla_mb = None
    if mem is not None:
        xla_mb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20
    params, opt_state, m = step(params, g.active, opt_state, batch)
    jax.block_until_ready(m["loss"])
    secs = []
    for i in range(args.iterations):
        batch["view"] = jnp.int32(i % len(frames))
        t0 = time.perf_counter()
        params, opt_state, m = step(params, g.active, opt_state, batch)
        jax.block_until_ready(m["loss"])
        secs.append(time.perf_counter() - t0)
    return {"size": args.size, "capacity": args.capacity, "compile_s": round(compile_s, 2),
            "s_per_iteration": round(statistics.median(secs), 4), "xla_memory_mb": xla_mb and round(xla_mb, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "overflow": bool(m["overflow"])}


def quality(args) -> dict:
    from genxd_jax.evaluation.image_metrics import psnr
    from genxd_jax.lift import fit_dynamic_scene, fit_scene, render, render_at
    from genxd_jax.lift.fit4d_config import get_config
    from genxd_jax.lift.toy4d import make_toy_scene

    s, n = args.quality_size, args.frames
    scene = make_toy_scene(40)
    frames, c2w, k, times = scene.clip(np.linspace(0.0, 1.0, n), s)
    held_t = (np.arange(n - 1) + 0.5) / (n - 1)
    held_frames, held_c2w, _, _ = scene.clip(held_t, s)
    config = get_config("tiny")
    t0 = time.perf_counter()
    d = fit_dynamic_scene(frames, c2w, k, times, iterations=args.fine, coarse_iterations=args.coarse, seed=0,
                          config=config, progress=True)
    dyn_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = fit_scene(frames, c2w, k, iterations=args.coarse + args.fine, seed=0, config=config.coarse, progress=True)
    static_s = time.perf_counter() - t0
    kj = jnp.asarray(k, jnp.float32)
    dyn = [float(psnr(jnp.clip(render_at(d, t, c, k, s, s).rgb, 0, 1), f))
           for t, c, f in zip(held_t, held_c2w, held_frames)]
    sta = [float(psnr(jnp.clip(render(g, jnp.asarray(c, jnp.float32), kj, s, s).rgb, 0, 1), f))
           for c, f in zip(held_c2w, held_frames)]
    return {"size": s, "frames": n, "coarse": args.coarse, "fine": args.fine,
            "heldout_psnr_4d": round(float(np.mean(dyn)), 2), "heldout_psnr_static": round(float(np.mean(sta)), 2),
            "fit_s_4d": round(dyn_s, 1), "fit_s_static": round(static_s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--capacity", type=int, default=4096)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--variant", default="object", help="genxd_jax.lift.fit4d_config variant of the speed part")
    p.add_argument("--quality-size", type=int, default=48)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--coarse", type=int, default=300)
    p.add_argument("--fine", type=int, default=1200)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out = {"machine": f"{platform.machine()} {jax.default_backend()} ({jax.devices()[0].device_kind})",
           "date": time.strftime("%Y-%m-%d", time.gmtime())}
    if not args.skip_speed:
        out["speed"] = speed(args)
        print(json.dumps(out["speed"]), flush=True)
    if not args.skip_quality:
        out["quality"] = quality(args)
        print(json.dumps(out["quality"]), flush=True)
    if args.json:
        import os
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.json)) or ".", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
