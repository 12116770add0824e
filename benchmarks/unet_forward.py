"""UNet forward benchmark: the released configuration, one 12-frame 256×256 sample (latent 32×32), indicator 2.

    python benchmarks/unet_forward.py [--config shared/fixtures/official-config/unet_config.json]
        [--frames 12] [--latent 32] [--dtype float32|bfloat16] [--repeats 3] [--attention xla|cudnn|tiled]
        [--im2col-max-pixels N]

Reports compile time, steady-state time per forward (the minimum over repeats), the process CPU time (user and
system) and minor page faults of each forward, peak host memory (ru_maxrss) and, from XLA's cost analysis, the
FLOPs of the forward and the achieved FLOP/s. On a shared machine compare CPU times as well as wall times.
Random weights (the released weights are not needed to time the network).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.models import build_unet, conv

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "shared/fixtures/official-config/unet_config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", default=None, choices=[None, "xla", "cudnn", "tiled"],
                        help="attention core; default: tiled on CPU, jax.nn.dot_product_attention elsewhere")
    parser.add_argument("--im2col-max-pixels", type=int, default=None,
                        help="CPU convolutions with at most this many output pixels per image run as one im2col "
                             "matmul (genxd_jax.models.conv; default its IM2COL_MAX_PIXELS; 0: always XLA's)")
    parser.add_argument("--json", default="", help="also write the numbers here")
    args = parser.parse_args()
    if args.im2col_max_pixels is not None:
        conv.IM2COL_MAX_PIXELS = args.im2col_max_pixels  # read when the forward is traced

    dtype = jnp.dtype(args.dtype)
    start = time.perf_counter()
    unet = build_unet(args.config, dtype=dtype, param_dtype=dtype if dtype == jnp.bfloat16 else jnp.float32,
                      attention_impl=args.attention)
    build_s = time.perf_counter() - start
    graphdef, state = nnx.split(unet)
    state = jax.device_put(state)
    del unet

    b, f, s = args.batch, args.frames, args.latent
    rng = np.random.default_rng(0)
    sample = jnp.asarray(rng.standard_normal((b, f, s, s, 15)), dtype)
    timestep = jnp.full((b,), 0.25 * np.log(3.7), jnp.float32)
    ids = jnp.zeros((b, f, 2), jnp.float32).at[..., 1].set(1.0)
    indicator = jnp.full((b,), 2, jnp.int32)
    motion = jnp.full((b,), 0.5, jnp.float32)

    forward = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a))
    start = time.perf_counter()
    compiled = forward.lower(state, sample, timestep, ids, indicator, motion).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    times, user, system, faults = [], [], [], []
    for _ in range(args.repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        compiled(state, sample, timestep, ids, indicator, motion).block_until_ready()
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        user.append(after.ru_utime - before.ru_utime)
        system.append(after.ru_stime - before.ru_stime)
        faults.append(after.ru_minflt - before.ru_minflt)
    steady = min(times)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"date={datetime.date.today()} machine={platform.machine()} cpus={jax.local_device_count()}x"
          f"{jax.devices()[0].platform} device={jax.devices()[0].device_kind}")
    print(f"config={args.config} frames={f} latent={s}x{s} batch={b} dtype={args.dtype} "
          f"im2col_max_pixels={conv.IM2COL_MAX_PIXELS}")
    rounded = [round(t, 2) for t in times]
    print(f"build_s={build_s:.1f} compile_s={compile_s:.1f} steady_s={steady:.2f} all={rounded}")
    print(f"cpu_user_s={[round(t, 1) for t in user]} cpu_sys_s={[round(t, 1) for t in system]} "
          f"minor_page_faults={faults}")
    print(f"xla_flops={flops / 1e12:.2f}T achieved={flops / steady / 1e12:.3f} TFLOP/s "
          f"peak_host_mem={peak_gib:.1f} GiB")
    if args.json:
        result = dict(impl="genxd_jax", jax=jax.__version__, date=str(datetime.date.today()), frames=f, latent=s,
                      batch=b, dtype=args.dtype, im2col_max_pixels=conv.IM2COL_MAX_PIXELS, compile_s=compile_s,
                      steady_min_s=steady, all_s=times, cpu_user_s=user, cpu_sys_s=system, minor_page_faults=faults,
                      peak_host_mem_gib=peak_gib)
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
