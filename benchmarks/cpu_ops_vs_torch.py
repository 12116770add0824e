"""The UNet's heaviest CPU ops in JAX (as genxd_jax runs them) and in PyTorch, on the same box, interleaved.

Shapes are those of the full UNet on one guided 12-frame 256² sample (latents 32², batch 2 × 12 = 24 frames):

- conv 3×3, C → C, stride 1, pad 1, on (24, S, S, C) for (C, S) = (320, 32), (640, 16), (1280, 8), (1280, 4);
  JAX: ``lax.conv_general_dilated`` NHWC/HWIO (XLA's convolution), NCHW/OIHW for comparison, and
  ``genxd_jax.models.conv.conv_general_dilated`` (what ``nnx.Conv`` runs in genxd_jax: an im2col matmul on maps
  of at most 8×8 with at least 640 input channels on the CPU, XLA's convolution otherwise);
  torch: ``F.conv2d`` NCHW (oneDNN), and with ``channels_last`` memory format.
- linear at 12,288 tokens (12 frames × 32²) × 320: 320 → 320 (attention projections), 320 → 2560 (GEGLU
  in-projection), 1280 → 320 (feed-forward out-projection); JAX ``x @ w + b`` (``nnx.Linear``), torch
  ``F.linear`` (MKL / oneDNN).
- attention over 12,288 tokens × 5 heads × 64 (the level-0 multi-view attention, one batch row): JAX
  ``tiled_attention`` (genxd_jax's CPU default) and ``jax.nn.dot_product_attention`` (XLA, in query blocks);
  torch ``F.scaled_dot_product_attention`` (its fused CPU flash attention).

Each op is compiled / warmed once, then every implementation runs once per round, round after round
(interleaved, so that load from other jobs on a shared box hits all of them alike); the table reports the
minimum over rounds and the GFLOP/s it implies. float32 throughout; torch uses ``--threads`` intra-op threads
(default: the CPU count JAX sees, 2 here).

    python benchmarks/cpu_ops_vs_torch.py [--rounds 5] [--only conv,linear,attention] [--json out.json]

torch is only needed here (the test extras install it); genxd_jax itself never imports it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time

import numpy as np

CONVS = [(320, 32), (640, 16), (1280, 8), (1280, 4)]
LINEARS = [(320, 320), (320, 2560), (1280, 320)]
TOKENS, HEADS, HEAD_DIM = 12 * 32 * 32, 5, 64


def _timer(fn, args, sync):
    """A zero-argument callable returning the wall time of ``sync(fn(*args))`` (arguments bound now)."""

    def run():
        t = time.perf_counter()
        sync(fn(*args))
        return time.perf_counter() - t

    return run


def build_cases(batch: int, only: set[str]):
    """{op name: (flops, {impl name: zero-arg callable returning its wall time})}."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from genxd_jax.models import conv
    from genxd_jax.models.attention import dot_product_attention, tiled_attention

    rng = np.random.default_rng(0)
    jsync = jax.block_until_ready

    def tsync(x):
        return x

    cases = {}
    if "conv" in only:
        for c, s in CONVS:
            x = rng.standard_normal((batch, s, s, c), np.float32)
            w = (rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c)).astype(np.float32)
            xj, wj = jnp.asarray(x), jnp.asarray(w)
            xj_nchw, wj_oihw = jnp.asarray(x.transpose(0, 3, 1, 2)), jnp.asarray(w.transpose(3, 2, 0, 1))
            nhwc = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                                     dimension_numbers=("NHWC", "HWIO", "NHWC")))
            ours = jax.jit(lambda x, w: conv.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                                  dimension_numbers=("NHWC", "HWIO", "NHWC")))
            nchw = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                                     dimension_numbers=("NCHW", "OIHW", "NCHW")))
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            xt_cl, wt_cl = xt.to(memory_format=torch.channels_last), wt.to(memory_format=torch.channels_last)
            flops = 2.0 * batch * s * s * c * c * 9
            tconv = functools.partial(F.conv2d, padding=1)
            cases[f"conv3x3 {c}ch {s}² ×{batch}"] = (flops, {
                "jax NHWC": _timer(nhwc, (xj, wj), jsync),
                "jax NCHW": _timer(nchw, (xj_nchw, wj_oihw), jsync),
                "genxd_jax (im2col ≤ 8², ≥ 640 ch)": _timer(ours, (xj, wj), jsync),
                "torch NCHW": _timer(tconv, (xt, wt), tsync),
                "torch channels_last": _timer(tconv, (xt_cl, wt_cl), tsync),
            })
    if "linear" in only:
        for cin, cout in LINEARS:
            x = rng.standard_normal((TOKENS, cin), np.float32)
            w = (rng.standard_normal((cin, cout)) / np.sqrt(cin)).astype(np.float32)
            b = np.zeros(cout, np.float32)
            xj, wj, bj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
            lin = jax.jit(lambda x, w, b: x @ w + b)
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T)), torch.from_numpy(b)
            cases[f"linear {TOKENS}×{cin}→{cout}"] = (2.0 * TOKENS * cin * cout, {
                "jax": _timer(lin, (xj, wj, bj), jsync),
                "torch": _timer(F.linear, (xt, wt, bt), tsync),
            })
    if "attention" in only:
        q, k, v = (rng.standard_normal((1, TOKENS, HEADS, HEAD_DIM), np.float32) for _ in range(3))
        qj, kj, vj = (jnp.asarray(a) for a in (q, k, v))
        tiled = jax.jit(tiled_attention)
        xla = jax.jit(lambda q, k, v: dot_product_attention(q, k, v, implementation="xla"))
        qt, kt, vt = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in (q, k, v))
        cases[f"attention {TOKENS} tok × {HEADS} heads × {HEAD_DIM}"] = (4.0 * TOKENS * TOKENS * HEADS * HEAD_DIM, {
            "jax tiled (default)": _timer(tiled, (qj, kj, vj), jsync),
            "jax xla dot_product_attention": _timer(xla, (qj, kj, vj), jsync),
            "torch sdpa": _timer(F.scaled_dot_product_attention, (qt, kt, vt), tsync),
        })
    return cases


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=24, help="frames per conv (2 guidance rows × 12 frames)")
    p.add_argument("--only", default="conv,linear,attention")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: os.cpu_count())")
    p.add_argument("--json", default="", help="write the results here (atomically)")
    args = p.parse_args(argv)

    import jax
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())
    torch.set_grad_enabled(False)
    only = set(args.only.split(","))
    cases = build_cases(args.batch, only)
    times = {op: {impl: [] for impl in impls} for op, (_, impls) in cases.items()}
    for _, impls in cases.values():  # compile and warm up
        for fn in impls.values():
            fn()
    for r in range(args.rounds):
        for op, (_, impls) in cases.items():
            for impl, fn in impls.items():
                times[op][impl].append(fn())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows = []
    print(f"| op | implementation | min of {args.rounds} (ms) | median (ms) | GFLOP/s (at min) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for op, (flops, impls) in cases.items():
        for impl in impls:
            t = np.asarray(times[op][impl])
            rows.append(dict(op=op, impl=impl, min_s=float(t.min()), median_s=float(np.median(t)),
                             gflops=flops / t.min() / 1e9))
            print(f"| {op} | {impl} | {1e3 * t.min():.1f} | {1e3 * np.median(t):.1f} | {flops / t.min() / 1e9:.0f} |")
    result = dict(jax=jax.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads(),
                  cpu_count=os.cpu_count(), rounds=args.rounds, batch=args.batch, rows=rows,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, args.json)
    return result


if __name__ == "__main__":
    main()
