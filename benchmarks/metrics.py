"""Throughput of the metric networks: LPIPS-VGG pairs at 256², FID Inception features at 299², I3D clips
(16 frames) at 224², CLIP ViT-L/14 images at 224².

    python benchmarks/metrics.py [--only lpips_vgg fid_inception] [--batch 8] [--repeats 3]

Each entry builds its network with random weights (the real weights do not change the compute), compiles
the jitted forward once, then times `--repeats` calls on a fixed batch and reports the best: images/s (for
LPIPS, image pairs/s), compile time, the process CPU time per call (user + system; on a shared machine
compare these as well as wall times) and XLA's FLOP count of one call. Adding a network: add a function to
`BENCHMARKS` that returns `(name, jitted callable, args, images per call)`.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def lpips_vgg(batch: int):
    """LPIPS-VGG of `batch` image pairs at 256×256."""
    from genxd_jax.evaluation.lpips import LPIPS

    model = LPIPS("vgg", rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.random((batch, 256, 256, 3)), jnp.float32)
    b = jnp.asarray(rng.random((batch, 256, 256, 3)), jnp.float32)
    fn = jax.jit(lambda st, x, y: nnx.merge(graphdef, st).distance(x, y))
    return "LPIPS-VGG 256² (pairs)", fn, (state, a, b), batch


def fid_inception(batch: int):
    """FID Inception pool3 features of `batch` images at 299×299 (no resize needed)."""
    from genxd_jax.evaluation.inception import InceptionFID
    from genxd_jax.evaluation.resize import DEFAULT_FID_RESIZE, resize_for_inception

    model = InceptionFID(rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    x = jnp.asarray(np.random.default_rng(0).random((batch, 299, 299, 3)), jnp.float32)
    fn = jax.jit(lambda st, im: nnx.merge(graphdef, st).pool3(resize_for_inception(im, DEFAULT_FID_RESIZE)))
    return "FID Inception 299² (images)", fn, (state, x), batch


def i3d(batch: int):
    """FVD I3D embeddings of `batch` clips of 16 frames at 224² (no resize needed), random weights."""
    from genxd_jax.evaluation.i3d import InceptionI3d, preprocess_clips

    model = InceptionI3d(rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    x = jnp.asarray(np.random.default_rng(0).random((batch, 16, 224, 224, 3)), jnp.float32)
    fn = jax.jit(lambda st, v: nnx.merge(graphdef, st)(preprocess_clips(v, 224)))
    return "I3D 16x224² (clips)", fn, (state, x), batch


def clip_l14(batch: int):
    """CLIP ViT-L/14 image embeddings of `batch` images at 224² (the CLIP-I default), random weights."""
    from genxd_jax.evaluation.clip import CLIPVisionConfig, CLIPVisionTower, preprocess_images

    model = CLIPVisionTower(CLIPVisionConfig(), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    x = jnp.asarray(np.random.default_rng(0).random((batch, 224, 224, 3)), jnp.float32)
    fn = jax.jit(lambda st, im: nnx.merge(graphdef, st)(preprocess_images(im, 224)))
    return "CLIP ViT-L/14 224² (images)", fn, (state, x), batch


BENCHMARKS = {"lpips_vgg": lpips_vgg, "fid_inception": fid_inception, "i3d": i3d, "clip_l14": clip_l14}


def run(entry, batch: int, repeats: int) -> dict:
    name, fn, args, count = entry(batch)
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    jax.block_until_ready(compiled(*args))  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    best = min(times)
    return {"name": name, "batch": count, "compile_s": compile_s, "best_s": best, "per_s": count / best,
            "cpu_s": cpu, "gflops": flops / 1e9}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    parser.add_argument("--batch", type=int, default=8, help="images (LPIPS: pairs) per call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    dev = jax.devices()[0]
    print(f"date={datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} machine={platform.machine()} "
          f"devices={jax.device_count()}x{dev.platform} device={dev.device_kind}")
    for key in args.only:
        r = run(BENCHMARKS[key], args.batch, args.repeats)
        print(f"{r['name']}: {r['per_s']:.2f}/s (batch {r['batch']}, best {r['best_s']:.2f} s, "
              f"compile {r['compile_s']:.1f} s, cpu per call {[round(c, 1) for c in r['cpu_s']]} s, "
              f"{r['gflops']:.0f} GFLOP per call)", flush=True)
    print(f"peak_host_mem={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
