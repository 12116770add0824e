"""Gaussian-splatting benchmark: render forward and value_and_grad time, compile time and XLA memory.

For every (number of Gaussians, image size) pair it builds a random scene in front of one camera (scales
shrinking with N so that the per-tile load stays realistic), sizes ``tile_capacity`` from the scene's exact
maximum per-tile count (rounded up to a multiple of the chunk), and measures

- compile time of the jitted forward and of ``value_and_grad`` of an L2 loss w.r.t. all parameters;
- steady-state time (min over ``--repeats`` after one warm-up call) of both;
- XLA's memory analysis of each compiled program (temporaries + arguments + outputs), i.e. the peak buffer
  memory the program needs on its device (on GPU this is the number that must fit);
- whether the render overflowed (it must not: the capacity is sized to avoid it).

Usage::

    python benchmarks/splat.py [--gaussians 10000 100000] [--sizes 256 512] [--repeats 3]
                               [--chunk-size 32] [--no-grad] [--json results.json]

Extra benchmarks (the fitting iterations/s of ``genxd_jax.lift.fit``) register themselves in ``EXTRA`` with
``register(name, fn)``; ``fn(args) -> list[dict]`` rows are printed after the render table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genxd_jax.lift import Gaussians
from genxd_jax.lift.project import project
from genxd_jax.lift.raster_tiled import tile_counts
from genxd_jax.lift.render import render

EXTRA: dict[str, Callable] = {}


def register(name: str, fn: Callable) -> None:
    """Adds a benchmark ``fn(args) -> list[dict]`` run after the render benchmark (e.g. fit iterations/s)."""
    EXTRA[name] = fn


def make_scene(n: int, seed: int = 0) -> Gaussians:
    """N random anisotropic Gaussians in a 4×4×4 box centred 6 units in front of the origin, degree-3 SH."""
    rng = np.random.default_rng(seed)
    means = rng.uniform([-2.0, -2.0, 4.0], [2.0, 2.0, 8.0], size=(n, 3))
    typical = 4.0 / n ** (1.0 / 3.0)  # mean spacing
    scales = typical * rng.lognormal(-0.7, 0.5, size=(n, 3))
    g = Gaussians.create(means, colors_rgb=rng.uniform(size=(n, 3)), scales=scales)
    return g.replace(
        quats=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        opacity_logits=jnp.asarray(rng.normal(0.0, 1.5, size=n), jnp.float32),
        sh_rest=jnp.asarray(rng.normal(size=(n, 15, 3)) * 0.05, jnp.float32),
    )


def camera():
    """Identity pose (looking down +z at the box) and a 60° field of view."""
    f = 0.5 / np.tan(np.deg2rad(30.0))
    return np.eye(4, dtype=np.float32), np.array([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], np.float32)


def required_capacity(g: Gaussians, size: int, chunk: int) -> int:
    """The scene's exact largest per-tile count, rounded up to a multiple of ``chunk``."""
    c2w, k = camera()
    proj = jax.jit(project, static_argnums=(3, 4))(g, c2w, k, size, size)
    m = int(jnp.max(tile_counts(proj, size, size)))
    return max(chunk, -(-m // chunk) * chunk)


def _memory_bytes(compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def _time(fn, *args, repeats: int) -> tuple[float, float]:
    """(min wall seconds, CPU seconds of this process in that call) over ``repeats`` calls after a warm-up.

    The CPU time (all threads) is robust to other jobs on a shared machine; wall time is not.
    """
    jax.block_until_ready(fn(*args))
    best, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu


def bench_render(n: int, size: int, *, repeats: int, chunk: int, grad: bool, seed: int = 0) -> dict:
    """One row: forward (and value_and_grad) timings and memory for N Gaussians at size × size."""
    g = make_scene(n, seed)
    c2w, k = camera()
    cap = required_capacity(g, size, chunk)
    target = jnp.full((size, size, 3), 0.5, jnp.float32)

    def forward(params):
        out = render(g.with_params(params), c2w, k, size, size, tile_capacity=cap, chunk_size=chunk)
        return out.rgb, out.overflow

    def loss(params):
        rgb, _ = forward(params)
        return jnp.mean((rgb - target) ** 2)

    params = g.params()
    row = {"gaussians": n, "size": size, "tile_capacity": cap, "chunk_size": chunk}
    t0, c0 = time.perf_counter(), time.process_time()
    fwd = jax.jit(forward).lower(params).compile()
    row["forward_compile_s"], row["forward_compile_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    row["forward_s"], row["forward_cpu_s"] = _time(fwd, params, repeats=repeats)
    row["forward_mem_mib"] = (_memory_bytes(fwd) or 0) / 2**20
    row["overflow"] = bool(fwd(params)[1])
    if grad:
        t0, c0 = time.perf_counter(), time.process_time()
        vg = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
        row["grad_compile_s"], row["grad_compile_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        row["value_and_grad_s"], row["value_and_grad_cpu_s"] = _time(vg, params, repeats=repeats)
        row["grad_mem_mib"] = (_memory_bytes(vg) or 0) / 2**20
    return row


def format_rows(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--no-grad", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows here")
    for name in EXTRA:
        parser.add_argument(f"--{name}", action="store_true", help=f"also run the {name} benchmark")
    args = parser.parse_args(argv)

    print(
        f"# {platform.node()} {platform.processor() or platform.machine()} | jax {jax.__version__} | "
        f"{jax.devices()[0].device_kind} | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    rows = []
    for n in args.gaussians:
        for size in args.sizes:
            rows.append(bench_render(n, size, repeats=args.repeats, chunk=args.chunk_size, grad=not args.no_grad))
            print(format_rows(rows[-1:]), flush=True)
    print(format_rows(rows))
    extra_rows = {}
    for name, fn in EXTRA.items():
        if getattr(args, name.replace("-", "_")):
            extra_rows[name] = fn(args)
            print(format_rows(extra_rows[name]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"render": rows, **extra_rows}, f, indent=1)


# ----------------------------------------------------------------------------------------------------------
# Fit iterations/s (genxd_jax.lift.fit; `--fit`). Owned by the fitting work: fit_scene on 8 views of a
# procedural scene at 256², N random initial Gaussians for each N of --gaussians (capacity N, densification
# off so N stays fixed), the tiny config's losses and learning rates. Warm-up fits size the per-tile capacity
# and compile the step (fit_scene caches it per size/capacity), then a timed fit of FIT_ITERATIONS iterations
# gives the steady-state iterations/s, host loop, view sampling and loss fetches included.
FIT_SIZE = 256
FIT_ITERATIONS = 20


def bench_fit(args) -> list[dict]:
    from genxd_jax.data.synthetic import make_synthetic_scene
    from genxd_jax.lift.fit import fit_scene
    from genxd_jax.lift.fit_config import get_config

    scene = make_synthetic_scene("3d", 0, 0, size=FIT_SIZE, num_frames=8)
    images = np.stack([scene.render(t) for t in range(8)]).astype(np.float32) / 255.0
    rows = []
    for n in args.gaussians:
        cfg = get_config("tiny")
        cfg.capacity = n
        cfg.init.method = "random"
        cfg.init.num_random = n
        cfg.densify.enabled = False
        t0 = time.perf_counter()
        # warm-up 1 learns the per-tile capacity the scene needs (adaptive sizing); warm-up 2 compiles the
        # step with that capacity fixed, so the timed fit neither overflows nor recompiles
        _, warm_info = fit_scene(
            images, scene.c2w, scene.intrinsics(), iterations=3, config=cfg, progress=False, return_info=True
        )
        cfg.render.tile_capacity = warm_info.tile_capacity
        fit_scene(images, scene.c2w, scene.intrinsics(), iterations=2, config=cfg, progress=False)
        warm = time.perf_counter() - t0
        cpu0 = time.process_time()
        _, info = fit_scene(
            images,
            scene.c2w,
            scene.intrinsics(),
            iterations=FIT_ITERATIONS,
            config=cfg,
            progress=False,
            return_info=True,
        )
        cpu = time.process_time() - cpu0  # process CPU time: all threads, independent of other load
        rows.append(
            {
                "fit_gaussians": n,
                "size": FIT_SIZE,
                "warmup_compile_s": warm,
                "tile_capacity": info.tile_capacity,
                "iterations": FIT_ITERATIONS,
                "fit_s": info.seconds,
                "it_per_s": FIT_ITERATIONS / info.seconds,
                "cpu_s_per_it": cpu / FIT_ITERATIONS,
                "overflow_renders": info.overflow_iterations,
            }
        )
        print(format_rows(rows[-1:]), flush=True)
    return rows


register("fit", bench_fit)


if __name__ == "__main__":
    main()
