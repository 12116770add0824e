"""Sampling benchmark: seconds per sample and UNet evaluations per second for the full released configuration.

    python benchmarks/sample.py                       # 12 frames, 256², 25 steps, CFG 3, float32
    python benchmarks/sample.py --precision bf16      # bfloat16 activations, float32 parameters (GPU)
    python benchmarks/sample.py --steps 2 --repeats 1 # a shorter run on a slow CPU box

The UNet is built from the released config (shared/fixtures/official-config/unet_config.json) and the VAE from the
standard SVD config, both with the models' random initialisation (no checkpoint needed: timings do not depend on
weights). One sample = encode the context view, the compiled denoising loop (both CFG halves in one batch of 2),
and the decode of all frames. The first call compiles and is reported separately; the timed repeats reuse it.

"UNet evaluations" counts sample-rows: a CFG step is 2 evaluations (one batched forward pass of batch 2).
Prints one JSON line with the results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO.parent / "shared" / "fixtures" / "official-config" / "unet_config.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="UNet config.json")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--sampler", choices=("euler", "heun", "dpmpp2m"), default="euler",
                   help="ODE solver (genxd_jax.diffusion.solvers); heun costs 2·steps − 1 UNet evaluations")
    p.add_argument("--views", type=int, default=1, help="context views")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--attention-impl", default=None, help="passed to the UNet (see genxd_jax.models)")
    p.add_argument("--repeats", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genxd_jax.diffusion import SchedulerConfig
    from genxd_jax.geometry import intrinsics_matrix, orbit_trajectory
    from genxd_jax.models import VAEConfig, build_unet, build_vae
    from genxd_jax.pipeline import GenXDPipeline

    compute = jnp.bfloat16 if args.precision == "bf16" else jnp.float32
    t0 = time.perf_counter()
    unet = build_unet(args.config, dtype=compute, param_dtype=jnp.float32, attention_impl=args.attention_impl)
    vae = build_vae(VAEConfig(), dtype=compute, param_dtype=jnp.float32)
    pipe = GenXDPipeline(unet, vae, SchedulerConfig())
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    images = rng.random((args.views, args.size, args.size, 3), dtype=np.float32)
    index = [int(i) for i in np.round(np.linspace(0, args.frames - 1, args.views))]
    c2w = orbit_trajectory(args.frames, elevation=15, radius=2)
    k = intrinsics_matrix(1.0938, 1.0938)

    def sample(seed):
        start = time.perf_counter()
        frames = pipe(images, index, c2w, k, num_inference_steps=args.steps, guidance_scale=args.guidance,
                      indicator=0, motion_strength=0.0, rng=jax.random.key(seed), sampler=args.sampler)
        return time.perf_counter() - start, frames

    first_s, frames = sample(0)
    assert frames.shape == (args.frames, args.size, args.size, 3) and np.all(np.isfinite(frames))
    times = [sample(i + 1)[0] for i in range(args.repeats)]
    # The denoising loop alone (UNet + scheduler), without VAE encode/decode.
    inputs = pipe.prepare(images, index, c2w, k, num_inference_steps=args.steps, guidance_scale=args.guidance,
                          indicator=0, motion_strength=0.0, rng=jax.random.key(0))
    loop_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pipe.denoise(inputs, args.guidance, sampler=args.sampler)
        loop_times.append(time.perf_counter() - start)

    from genxd_jax.diffusion import num_model_evaluations

    evals = num_model_evaluations(args.sampler, args.steps) * (2 if args.guidance > 1 else 1)
    sec = float(np.median(times))
    loop = float(np.median(loop_times))
    result = {
        "benchmark": "sample",
        "date": datetime.date.today().isoformat(),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "frames": args.frames, "size": args.size, "steps": args.steps, "sampler": args.sampler,
        "guidance": args.guidance, "views": args.views, "precision": args.precision,
        "build_s": round(build_s, 2),
        "first_call_s (compile + run)": round(first_s, 2),
        "seconds_per_sample": round(sec, 3),
        "denoise_loop_s": round(loop, 3),
        "unet_evals_per_s": round(evals / loop, 3),
        "seconds_per_sample_at_25_steps (extrapolated)": round(sec - loop + loop * 25 / args.steps, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
