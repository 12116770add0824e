"""Depth Anything V2 timing: seconds per frame of the NNX network (curation's learned depth source).

    python benchmarks/depth_anything.py [--variant small|base|large] [--height 518 --width 518] [--frames 4]
        [--batch 1] [--dtype float32|bfloat16] [--attention xla|tiled] [--end-to-end [--input-size 518]]

Times the jitted network on (batch, height, width, 3) inputs (sides multiples of 14; 518² is what the official
pipeline feeds a square frame, 518×924 a 16:9 one) with random weights: compile time, then seconds per frame
(min and median over `--frames` batches) and the process CPU time per frame. `--end-to-end` times
`DepthAnythingV2.__call__` on a uint8 frame of that size instead (OpenCV bicubic resize + normalisation + network +
bilinear resize back; a 256×455 frame then runs the network at 518×924). On a shared machine the wall times
depend on the other load: compare CPU times too.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from genxd_jax.curation.depth_anything import VARIANTS, DepthAnythingV2, _predict, build_depth_anything


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="small", choices=sorted(VARIANTS))
    parser.add_argument("--height", type=int, default=518)
    parser.add_argument("--width", type=int, default=518)
    parser.add_argument("--frames", type=int, default=4, help="timed batches after the compiling one")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--attention", default=None, choices=[None, "xla", "tiled"])
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--input-size", type=int, default=518,
                        help="--end-to-end: the shorter side the frame is resized to (official: 518)")
    args = parser.parse_args()

    config = VARIANTS[args.variant]
    start = time.perf_counter()
    model = build_depth_anything(config, dtype=jnp.dtype(args.dtype), attention_impl=args.attention)
    build_s = time.perf_counter() - start
    wrapper = DepthAnythingV2(model, input_size=args.input_size)
    rng = np.random.default_rng(0)
    if args.end_to_end:
        frames = rng.integers(0, 256, (args.batch, args.height, args.width, 3), dtype=np.uint8)
        run = lambda: wrapper.predict(frames, batch_size=args.batch)  # noqa: E731
    else:
        pixels = jnp.asarray(rng.standard_normal((args.batch, args.height, args.width, 3)), jnp.dtype(args.dtype))
        out_hw = (args.height // 14 * 14, args.width // 14 * 14)
        run = lambda: _predict(wrapper._graphdef, wrapper._state, pixels, out_hw).block_until_ready()  # noqa: E731

    start = time.perf_counter()
    run()
    compile_s = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(args.frames):
        c0, t0 = _cpu_s(), time.perf_counter()
        run()
        walls.append((time.perf_counter() - t0) / args.batch)
        cpus.append((_cpu_s() - c0) / args.batch)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(wrapper._state))
    mode = f"end-to-end, input size {args.input_size}" if args.end_to_end else "network only"
    print(f"Depth Anything V2 {args.variant} ({params / 1e6:.1f} M params), {args.height}x{args.width}, "
          f"batch {args.batch}, {args.dtype}, {mode}")
    print(f"  machine: {platform.node()} {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"  build {build_s:.1f} s, first call (compile + run) {compile_s:.1f} s")
    print(f"  per frame: wall min {min(walls):.2f} s, median {statistics.median(walls):.2f} s; "
          f"CPU {statistics.median(cpus):.2f} s")
    print(f"  peak host memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
