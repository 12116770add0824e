"""Train-step benchmark (run mode) and pod-sizing planner (plan mode) for `genxd_jax.train_step`.

Run mode (default) builds the real train state on the available devices, compiles the jitted step ahead of
time, runs warm-up + timed steps on a synthetic batch and reports compile time, step time, examples/s,
achieved FLOP/s, MFU and XLA's per-device memory:

    python benchmarks/train_step.py [--config configs/stage3.py:tiny] [--steps 10] [--warmup 2]
        [--batch-size B] [--frames F] [--resolution R] [--dtype bfloat16] [--remat full] [--mesh data=1,fsdp=8]
        [--peak-tflops T] [--json out.json] [--config.optimizer.learning_rate=1e-4 ...]

Plan mode compiles the step for a fake mesh of N CPU devices from abstract shapes only (no parameter is
allocated) and reports per-device memory and FLOPs, to size a pod before renting it:

    python benchmarks/train_step.py --plan --config configs/stage3.py:full --devices 64 --mesh data=8,fsdp=8

Notes
- Plan mode sets ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (plus fast LLVM codegen and an XLA dump
  of the step) and ``JAX_PLATFORMS=cpu`` before jax is imported. Its memory numbers come from XLA:CPU's buffer
  assignment for the SPMD-partitioned per-device program; GPU/TPU compilers fuse and schedule differently, so
  treat temps as an estimate (argument/output sizes are exact). Plan mode uses XLA:CPU's memory-optimised
  scheduler (``--plan-scheduler``), closer to the memory-aware schedulers of the GPU/TPU compilers; the CPU
  default schedules for concurrency and needs ~1.8× the temps on the full model. The default plan mesh is
  pure FSDP (data=1, fsdp=N) and the default global batch is data × fsdp (one example per device).
- XLA:CPU spends most of a large compile after buffer assignment (building its thunk executor), so plan mode
  reads the per-device memory from the ``*-buffer-assignment.txt`` dump as soon as it appears and exits without
  waiting for the executable (``--plan-wait`` waits and then reports ``memory_analysis()`` and XLA's FLOPs too).
- On the CPU backend the UNet's attention defaults to a CPU-only tiled loop; plan mode traces the step with the
  ``jax.nn.dot_product_attention`` path ("xla") that GPUs and TPUs take (``--attention``,
  ``--attention-block-elements`` change this).
- The benchmark always initialises the UNet at random (``config.init.source`` is ignored). In run mode a
  released-VAE ``config.vae.path`` that does not exist is replaced by a randomly initialised SVD VAE of the
  same shape (timing does not need the weights).
- FLOPs. ``xla`` is ``compiled.cost_analysis()`` of the per-device program. XLA counts the body of a while
  loop once, and the multi-view attention runs its query blocks in a ``lax.map`` loop when the score matrix is
  large (genxd_jax.models.attention), so ``xla`` undercounts the full config. ``hardware`` re-lowers the step
  with the attention unblocked and takes the (global) cost analysis of that HLO: every FLOP executed,
  rematerialised forward included. ``model`` does the same with remat off: the FLOPs of forward + backward,
  the usual MFU numerator. Per-device values are the global ones / devices.
- MFU = model FLOPs per device / step time / peak; HFU uses the hardware FLOPs. Peaks are nominal datasheet
  dense bf16 numbers (``PEAK_TFLOPS``), matched against ``jax.devices()[0].device_kind``; ``--peak-tflops``
  overrides them. For float32 compute the bf16 peak overstates what the chip can do.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from unittest import mock

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

# Nominal datasheet numbers per device: (substring of device_kind, lowercase; dense bf16 TFLOP/s; HBM GiB).
# The first match wins (so "tpu v5 lite" = v5e is tested before "tpu v5" = v5p).
PEAK_TFLOPS = (
    ("h100 pcie", 756.0, 80),
    ("h100", 989.0, 80),  # H100 SXM
    ("h200", 989.0, 141),
    ("a100", 312.0, 80),
    ("tpu v4", 275.0, 32),
    ("tpu v5 lite", 197.0, 16),  # v5e
    ("tpu v5e", 197.0, 16),
    ("tpu v5p", 459.0, 95),
    ("tpu v5", 459.0, 95),  # v5p reports "TPU v5"
    ("tpu v6 lite", 918.0, 32),  # v6e
)
# Rows of the plan-mode step-time table: (name, device_kind key into PEAK_TFLOPS).
PLAN_TARGETS = (("H100 SXM", "h100"), ("H200", "h200"), ("A100", "a100"), ("TPU v4", "tpu v4"),
                ("TPU v5e", "tpu v5e"), ("TPU v5p", "tpu v5p"), ("TPU v6e", "tpu v6 lite"))
PLAN_MFU = (1.0, 0.4)


def peak_for(device_kind: str):
    """``(peak TFLOP/s, HBM GiB)`` for a device kind, or ``(None, None)``."""
    kind = device_kind.lower()
    for key, tflops, hbm in PEAK_TFLOPS:
        if key in kind:
            return tflops, hbm
    return None, None


# ----------------------------------------------------------------------------------------------------------
# arguments and config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/stage3.py:tiny", help="FILE.py[:VARIANT] with get_config(variant)")
    p.add_argument("--plan", action="store_true", help="plan mode: abstract compile on a fake CPU mesh")
    p.add_argument("--devices", type=int, default=8, help="plan mode: number of fake CPU devices")
    p.add_argument("--mesh", default="", help="data=D,fsdp=F (default: config.mesh; plan mode: data=1,fsdp=N)")
    p.add_argument("--global-batch", type=int, default=0, help="global batch (plan default: data × fsdp)")
    p.add_argument("--batch-size", type=int, default=0, help="config.data.batch_size (per process)")
    p.add_argument("--frames", type=int, default=0, help="config.data.num_frames")
    p.add_argument("--resolution", type=int, default=0, help="config.data.resolution")
    p.add_argument("--dtype", default="", choices=["", "float32", "bfloat16", "float16"], help="config.model.dtype")
    p.add_argument("--remat", default=None, help="config.model.remat_policy ('' or none/full/dots/dots_no_batch)")
    p.add_argument("--plan-full-codegen", action="store_true",
                   help="plan mode: keep XLA:CPU's LLVM optimisations (by default off: the plan never runs)")
    p.add_argument("--plan-wait", action="store_true",
                   help="plan mode: wait for the whole compile (default: read the memory from XLA's buffer-"
                        "assignment dump and abandon the compile, whose last phase is very slow on CPU)")
    p.add_argument("--plan-scheduler", default="memory", choices=["memory", "default"],
                   help="plan mode: XLA:CPU's memory-optimised HLO scheduler (default) or its default one, which "
                        "favours concurrency and nearly doubles the temps of the full model")
    p.add_argument("--dump-dir", default="", help="plan mode: keep XLA's dump here (default: a temporary dir)")
    p.add_argument("--attention", default=None, choices=["", "xla", "cudnn", "tiled"],
                   help="attention implementation where the model leaves it to the backend (run default: the "
                        "model's choice; plan default: xla, what GPUs and TPUs run)")
    p.add_argument("--attention-block-elements", type=int, default=-1,
                   help="score-block budget of the multi-view attention (genxd_jax.models.attention; -1: the "
                        "model's default 2^28, 0: never split into query blocks)")
    p.add_argument("--latents", action="store_true",
                   help="train on pre-encoded latents (config.data.latents): the batch carries the posterior "
                        "statistics and the step skips the VAE encoder")
    p.add_argument("--steps", type=int, default=10, help="run mode: timed steps")
    p.add_argument("--warmup", type=int, default=2, help="run mode: untimed steps after compilation")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="per-device peak for MFU (default: datasheet)")
    p.add_argument("--no-model-flops", action="store_true", help="skip the re-lowerings that count exact FLOPs")
    p.add_argument("--cache-dir", default="", help="jax persistent compilation cache directory")
    p.add_argument("--json", default="", help="also write the report as JSON to this file")
    args, rest = p.parse_known_args(argv)
    if args.attention is None:
        args.attention = "xla" if args.plan else ""
    overrides = []
    for item in rest:
        if not (item.startswith("--config.") and "=" in item):
            p.error(f"unrecognised argument {item!r} (config overrides look like --config.a.b=value)")
        key, _, value = item[len("--config."):].partition("=")
        overrides.append((key, value))
    return args, overrides


def load_config(spec: str):
    path, _, variant = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file() and (REPO / path).is_file():
        file = REPO / path
    module_spec = importlib.util.spec_from_file_location(f"_bench_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def _coerce(text: str, old):
    if isinstance(old, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected a boolean, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(old, int):
        return int(text)
    if isinstance(old, float):
        return float(text)
    if isinstance(old, str):
        return text
    return ast.literal_eval(text)


def apply_override(config, dotted: str, text: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[leaf] = _coerce(text, node[leaf])


def parse_mesh(text: str) -> dict[str, int]:
    shape = {}
    for part in text.split(","):
        name, _, size = part.partition("=")
        shape[name.strip()] = int(size)
    if set(shape) - {"data", "fsdp"}:
        raise SystemExit(f"--mesh: only the axes data and fsdp exist, got {text!r}")
    return {"data": shape.get("data", 1), "fsdp": shape.get("fsdp", 1)}


def configure(args, overrides, num_devices: int, process_count: int):
    """The config with the command line applied, validated; returns ``(config, mesh_shape, global_batch)``."""
    from genxd_jax import train

    config = load_config(args.config)
    for key, value in overrides:
        apply_override(config, key, value)
    config.init.source = "random"
    if args.batch_size:
        config.data.batch_size = args.batch_size
    if args.frames:
        config.data.num_frames = args.frames
    if args.resolution:
        config.data.resolution = args.resolution
    if args.dtype:
        config.model.dtype = args.dtype
    if args.remat is not None:
        config.model.remat_policy = "" if args.remat in ("", "none") else args.remat
    if getattr(args, "latents", False):
        from genxd_jax.data import source_config

        config.data.latents = True  # shapes only: the sources are never read here
        config.data.sources = tuple(source_config(s.name, "latents", s.path or s.name, s.weight)
                                    for s in config.data.sources)
        config.data.square_mode, config.data.pad_probability = "crop", 0.0
    if args.mesh:
        shape = parse_mesh(args.mesh)
    elif args.plan:
        shape = {"data": 1, "fsdp": num_devices}
    else:
        shape = None
    if shape is not None:
        config.mesh.data, config.mesh.fsdp = shape["data"], shape["fsdp"]
    shape = train.resolve_mesh_shape(config, num_devices)
    shards = shape["data"] * shape["fsdp"]
    if args.global_batch:
        if args.global_batch % process_count:
            raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {process_count} processes")
        config.data.batch_size = args.global_batch // process_count
    elif args.plan and not args.batch_size:
        config.data.batch_size = shards
    train.validate_config(config, num_devices=num_devices, process_count=process_count)
    return config, shape, int(config.data.batch_size) * process_count


# ----------------------------------------------------------------------------------------------------------
# measurements


def shard_bytes(tree) -> int:
    """Bytes one device holds of ``tree`` (arrays or ShapeDtypeStructs with shardings): the sum of shard sizes."""
    total = 0
    for x in _leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
        total += math.prod(shape) * np.dtype(x.dtype).itemsize
    return total


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def abstract_of(tree):
    import jax

    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                        tree)


def cost_of(obj) -> dict:
    cost = obj.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def memory_of(compiled) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0)) for k in
           ("argument", "output", "alias", "temp", "generated_code")}
    out["peak_estimate"] = out["argument"] + out["output"] - out["alias"] + out["temp"] + out["generated_code"]
    return out


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


@contextlib.contextmanager
def attention_override(implementation: str = "", elements: int = -1):
    """While the step is traced, runs the UNet's attention (``genxd_jax.models.attention.dot_product_attention``)
    with ``implementation`` where a module leaves it to the backend ("" = unchanged) and ``elements`` as the
    score-block budget of the jax.nn path (-1 = unchanged, 0 = never split into query blocks).

    The model picks a CPU-only tiled attention (a loop over small score tiles) when the default backend is the
    CPU, so plan mode forces "xla", the path GPUs and TPUs take with the default config."""
    if not implementation and elements < 0:
        yield
        return
    from genxd_jax.models import attention

    original = attention.dot_product_attention

    def patched(q, k, v, *, implementation=None, **kwargs):
        if elements >= 0:
            kwargs["budget"] = 1 << 62 if elements == 0 else elements
        return original(q, k, v, implementation=implementation or forced, **kwargs)

    forced = implementation or None
    with mock.patch.object(attention, "dot_product_attention", patched):
        yield


def exact_flops(config, abstract_state, autoencoder, abstract_batch_, mesh, *, remat: bool) -> float:
    """Global FLOPs of one step from the unoptimised HLO, the multi-view attention unblocked (no while loop);
    ``remat=False`` also turns rematerialisation off (model FLOPs)."""
    import jax

    from genxd_jax import train_step as ts

    cfg = copy.deepcopy(config)
    if not remat:
        cfg.model.remat_policy = ""
    tx, _ = ts.make_optimizer(cfg)
    graphdef, _ = ts.abstract_train_state(cfg, tx, mesh)
    with attention_override("xla", 0), jax.set_mesh(mesh):
        jitted, ae_state = ts.make_train_step(cfg, graphdef, autoencoder, ts.shardings_of(abstract_state), mesh)
        lowered = jitted.lower(abstract_state, abstract_batch_, abstract_of(ae_state))
        return float(cost_of(lowered).get("flops", float("nan")))


def synthetic_batch(config, batch: int, seed: int = 0) -> dict:
    """A random numpy batch with valid cameras (identity rotations, random translations)."""
    rng = np.random.default_rng(seed)
    f, s = int(config.data.num_frames), int(config.data.resolution)
    c2w = np.tile(np.eye(4, dtype=np.float32), (batch, f, 1, 1))
    c2w[..., :3, 3] = rng.normal(size=(batch, f, 3))
    intrinsics = np.tile(np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float32), (batch, f, 1, 1))
    mask = rng.random((batch, f)) < 0.3
    mask[:, 0], mask[:, -1] = True, False
    out = dict(images=rng.random((batch, f, s, s, 3), dtype=np.float32), c2w=c2w, intrinsics=intrinsics,
               indicator=rng.integers(0, 3, size=batch).astype(np.int32),
               motion_strength=rng.random(batch, dtype=np.float32), context_mask=mask)
    if config.data.get("latents", False):  # stored posterior statistics instead of images
        h = s // 8
        del out["images"]
        out["latent_mean"] = rng.normal(size=(batch, f, h, h, 4)).astype(np.float32)
        out["latent_logvar"] = np.full((batch, f, h, h, 4), -6.0, np.float32)
    return out


def run_autoencoder(config):
    """The frozen autoencoder for run mode; a random SVD VAE when the released directory is missing."""
    from genxd_jax import train_step as ts
    from genxd_jax.models import VAEConfig, build_vae

    path = config.vae.path
    if path != "pool8" and not os.path.isdir(path):
        print(f"[train_step] {path} not found: using a randomly initialised SVD VAE", file=sys.stderr)
        return build_vae(VAEConfig())
    return ts.make_autoencoder(config)


# ----------------------------------------------------------------------------------------------------------
# the two modes


def common_report(args, config, mesh_shape, global_batch, state, ae_state, compiled, compile_s, lower_s) -> dict:
    import jax

    shards = mesh_shape["data"] * mesh_shape["fsdp"]
    cost = cost_of(compiled) if compiled is not None else {}
    state_bytes = {k: shard_bytes(v) for k, v in state.items()}
    return {
        "mode": "plan" if args.plan else "run",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "num_devices": shards,
        "config": args.config,
        "mesh": dict(mesh_shape),
        "global_batch": global_batch,
        "per_device_batch": global_batch / shards,
        "frames": int(config.data.num_frames),
        "resolution": int(config.data.resolution),
        "dtype": config.model.dtype,
        "remat": config.model.remat_policy or "none",
        "attention": args.attention or "model default",
        "attention_block_elements": args.attention_block_elements,
        "ema": "ema" in state,
        "params": int(sum(math.prod(x.shape) for x in _leaves(state["params"]))),
        "state_bytes_per_device": {**state_bytes, "total": sum(state_bytes.values())},
        "autoencoder_bytes_per_device": shard_bytes(ae_state),
        "lower_s": lower_s,
        "compile_s": compile_s,
        "memory_per_device": memory_of(compiled) if compiled is not None else {},
        "flops": {"xla_per_device": float(cost.get("flops", float("nan")))},
        "bytes_accessed_per_device": float(cost.get("bytes accessed", float("nan"))),
    }


def add_exact_flops(report, args, config, state, autoencoder, batch, mesh) -> None:
    if args.no_model_flops:
        return
    n = report["num_devices"]
    start = time.perf_counter()
    abstract_state, abstract_batch_ = abstract_of(state), abstract_of(batch)
    hardware = exact_flops(config, abstract_state, autoencoder, abstract_batch_, mesh, remat=True)
    if config.model.remat_policy:
        model = exact_flops(config, abstract_state, autoencoder, abstract_batch_, mesh, remat=False)
    else:
        model = hardware
    report["flops"].update(hardware_total=hardware, hardware_per_device=hardware / n, model_total=model,
                           model_per_device=model / n)
    report["exact_flops_s"] = time.perf_counter() - start


def parse_buffer_assignment(path) -> dict:
    """Per-device sizes from XLA's ``*-buffer-assignment.txt`` dump, summed as ``CompiledMemoryStats`` sums them:
    arguments = parameter allocations, outputs = maybe-live-out ones, alias = both (donated), temp = the
    preallocated temp buffer and other plain allocations (thread-local and constant ones are not counted)."""
    out = dict(argument=0, output=0, alias=0, temp=0, generated_code=0)
    pattern = re.compile(r"allocation \d+: size (\d+)(.*):$")
    with open(path) as f:
        for line in f:
            if not line.startswith("allocation "):
                continue
            m = pattern.match(line.rstrip())
            if m is None:
                continue
            size, attrs = int(m.group(1)), m.group(2)
            param = re.match(r", parameter \d+", attrs) is not None
            live_out = "maybe-live-out" in attrs
            out["argument"] += size * param
            out["output"] += size * live_out
            out["alias"] += size * (param and live_out)
            if not (param or live_out or "thread-local" in attrs or "constant" in attrs):
                out["temp"] += size
    out["peak_estimate"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def compile_until_buffer_assignment(lowered, dump_dir: str, wait: bool, poll_s: float = 2.0):
    """Compiles ``lowered`` in a thread; returns ``(compiled or None, compile_s or None, dump_memory or None,
    seconds to the buffer-assignment dump or None)``.

    XLA:CPU spends a long time after buffer assignment building its thunk executor (ExecutionGraph::Create is
    quadratic in the number of thunks: over 20 minutes for the full model on 2 cores), so unless ``wait`` the
    memory is read from the buffer-assignment dump and the compile is abandoned (the caller exits).
    """
    holder = {}

    def work():
        try:
            holder["compiled"] = lowered.compile()
        except Exception as e:  # re-raised in the main thread
            holder["error"] = e
        holder["compile_s"] = time.perf_counter() - start

    start, start_wall = time.perf_counter(), time.time()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    dump_mem, dump_s, last_size = None, None, -1
    while thread.is_alive():
        thread.join(poll_s)
        if dump_mem is not None:
            if not wait:
                break
            continue
        files = sorted(pathlib.Path(dump_dir).glob("*jit_train_step*after_optimizations-buffer-assignment.txt"))
        if files:
            size = files[-1].stat().st_size
            if size == last_size and size > 0:
                dump_mem, dump_s = parse_buffer_assignment(files[-1]), files[-1].stat().st_mtime - start_wall
                print(f"[train_step] buffer assignment after {dump_s:.0f} s", file=sys.stderr, flush=True)
            last_size = size
    if "error" in holder:
        raise holder["error"]
    if dump_mem is None:
        files = sorted(pathlib.Path(dump_dir).glob("*jit_train_step*after_optimizations-buffer-assignment.txt"))
        if files:
            dump_mem, dump_s = parse_buffer_assignment(files[-1]), files[-1].stat().st_mtime - start_wall
    return holder.get("compiled"), holder.get("compile_s"), dump_mem, dump_s


def plan(args) -> dict:
    import jax

    from genxd_jax import train
    from genxd_jax import train_step as ts

    if jax.device_count() != args.devices:
        raise SystemExit(f"expected {args.devices} fake devices, jax sees {jax.device_count()} "
                         "(was jax imported before XLA_FLAGS was set?)")
    config, mesh_shape, global_batch = configure(args, args.overrides, args.devices, 1)
    mesh = train.make_mesh(config)
    tx, _ = ts.make_optimizer(config)
    graphdef, state = ts.abstract_train_state(config, tx, mesh)
    autoencoder = ts.make_autoencoder(config, abstract=True)
    batch = ts.abstract_batch(config, global_batch, mesh)
    with jax.set_mesh(mesh), attention_override(args.attention, args.attention_block_elements):
        jitted, ae_state = ts.make_train_step(config, graphdef, autoencoder, ts.shardings_of(state), mesh)
        start = time.perf_counter()
        lowered = jitted.lower(state, batch, ae_state)
        lower_s = time.perf_counter() - start
    report = common_report(args, config, mesh_shape, global_batch, state, ae_state, None, None, lower_s)
    add_exact_flops(report, args, config, state, autoencoder, batch, mesh)  # before the compile: less RAM at once
    with jax.set_mesh(mesh):
        compiled, compile_s, dump_mem, dump_s = compile_until_buffer_assignment(lowered, args.dump_dir,
                                                                                wait=args.plan_wait)
    report["compile_s"] = compile_s
    report["compile_finished"] = compiled is not None
    report["buffer_assignment_s"] = dump_s
    report["memory_per_device_dump"] = dump_mem
    if compiled is not None:
        report["memory_per_device"] = memory_of(compiled)
        report["memory_source"] = "memory_analysis"
        report["flops"]["xla_per_device"] = float(cost_of(compiled).get("flops", float("nan")))
        report["bytes_accessed_per_device"] = float(cost_of(compiled).get("bytes accessed", float("nan")))
    else:
        report["memory_per_device"] = dump_mem or {}
        report["memory_source"] = "buffer-assignment dump (compile abandoned)"
    flops = report["flops"].get("model_per_device") or report["flops"]["xla_per_device"]
    hw = report["flops"].get("hardware_per_device") or flops
    report["step_time_lower_bound_s"] = {
        name: {f"mfu_{m:g}": flops / (peak_for(key)[0] * 1e12 * m) for m in PLAN_MFU}
        | {"hbm_gib": peak_for(key)[1], "hardware_at_100pct": hw / (peak_for(key)[0] * 1e12)}
        for name, key in PLAN_TARGETS}
    report["peak_rss_gib"] = peak_rss_gib()
    return report


def run(args) -> dict:
    import jax

    from genxd_jax import train
    from genxd_jax import train_step as ts

    config, mesh_shape, global_batch = configure(args, args.overrides, jax.device_count(), jax.process_count())
    mesh = train.make_mesh(config)
    tx, _ = ts.make_optimizer(config)
    start = time.perf_counter()
    graphdef, state = ts.create_train_state(config, tx, mesh)
    autoencoder = run_autoencoder(config)
    jax.block_until_ready(state)
    build_s = time.perf_counter() - start
    local = synthetic_batch(config, int(config.data.batch_size), seed=jax.process_index())
    with jax.set_mesh(mesh), attention_override(args.attention, args.attention_block_elements):
        jitted, ae_state = ts.make_train_step(config, graphdef, autoencoder, ts.shardings_of(state), mesh)
        batch = ts.to_global_batch(local, mesh)
        start = time.perf_counter()
        lowered = jitted.lower(state, batch, ae_state)
        lower_s = time.perf_counter() - start
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        report = common_report(args, config, mesh_shape, global_batch, state, ae_state, compiled, compile_s,
                               lower_s)
    # outside the mesh context: abstract_train_state (nnx.eval_shape) fails under jax.set_mesh
    add_exact_flops(report, args, config, state, autoencoder, batch, mesh)
    with jax.set_mesh(mesh):
        for _ in range(args.warmup):
            state, metrics = compiled(state, batch, ae_state)
        jax.block_until_ready(state)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch, ae_state)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    median = statistics.median(times)
    p90 = float(np.percentile(times, 90))
    peak, _ = peak_for(report["device_kind"])
    peak = args.peak_tflops or peak
    flops = report["flops"]
    report.update(
        build_s=build_s,
        steps=args.steps,
        warmup=args.warmup,
        step_time_s={"median": median, "p90": p90, "min": min(times), "all": times},
        examples_per_s=global_batch / median,
        achieved_tflops_per_device={"xla": flops["xla_per_device"] / median / 1e12},
        loss=metrics["loss"],
        finite=bool(metrics["finite"]),
        peak_tflops=peak,
        peak_rss_gib=peak_rss_gib(),
    )
    for kind in ("hardware", "model"):
        if f"{kind}_per_device" in flops:
            report["achieved_tflops_per_device"][kind] = flops[f"{kind}_per_device"] / median / 1e12
    if peak:
        achieved = report["achieved_tflops_per_device"]
        report["mfu"] = achieved.get("model", achieved["xla"]) / peak
        report["hfu"] = achieved.get("hardware", achieved["xla"]) / peak
    return report


# ----------------------------------------------------------------------------------------------------------
# output


def _gib(n) -> str:
    return f"{n / 2**30:.3f} GiB"


def _t(n) -> str:
    return f"{n / 1e12:.4g} TFLOP"


def format_report(r: dict) -> str:
    rows = [
        ("mode", r["mode"]),
        ("devices", f"{r['num_devices']} × {r['device_kind']} ({r['backend']}), mesh {r['mesh']}"),
        ("config", f"{r['config']}: {r['frames']} frames × {r['resolution']}², {r['dtype']}, remat {r['remat']}, "
                   f"ema {r['ema']}, attention {r['attention']} (block budget {r['attention_block_elements']})"),
        ("global batch", f"{r['global_batch']} ({r['per_device_batch']:g} per device)"),
        ("UNet parameters", f"{r['params']:,}"),
    ]
    for k, v in r["state_bytes_per_device"].items():
        rows.append((f"state/{k} per device", _gib(v)))
    rows.append(("autoencoder per device", _gib(r["autoencoder_bytes_per_device"])))
    rows.append(("lower", f"{r['lower_s']:.1f} s"))
    if r.get("buffer_assignment_s") is not None:
        rows.append(("compile to buffer assignment", f"{r['buffer_assignment_s']:.1f} s"))
    rows.append(("compile", "abandoned (memory from the buffer-assignment dump)" if r["compile_s"] is None
                 else f"{r['compile_s']:.1f} s"))
    if "exact_flops_s" in r:
        rows.append(("FLOP-count lowerings", f"{r['exact_flops_s']:.1f} s"))
    for k, v in r["memory_per_device"].items():
        rows.append((f"XLA memory/{k}", _gib(v)))
    f = r["flops"]
    xla = f["xla_per_device"]
    rows.append(("FLOPs/step per device (xla)", _t(xla) if xla == xla else "n/a (no compiled executable)"))
    for kind in ("hardware", "model"):
        if f"{kind}_per_device" in f:
            rows.append((f"FLOPs/step per device ({kind})", _t(f[f"{kind}_per_device"])))
            rows.append((f"FLOPs/step total ({kind})", _t(f[f"{kind}_total"])))
    if r["mode"] == "run":
        st = r["step_time_s"]
        rows += [("step time median / p90 / min", f"{st['median'] * 1e3:.1f} / {st['p90'] * 1e3:.1f} / "
                                                  f"{st['min'] * 1e3:.1f} ms ({r['steps']} steps)"),
                 ("examples/s", f"{r['examples_per_s']:.2f}")]
        for k, v in r["achieved_tflops_per_device"].items():
            rows.append((f"achieved per device ({k})", f"{v:.4g} TFLOP/s"))
        if "mfu" in r:
            rows.append(("MFU / HFU", f"{100 * r['mfu']:.2f}% / {100 * r['hfu']:.2f}% of {r['peak_tflops']:g} "
                                      "TFLOP/s (nominal bf16 peak)"))
        rows.append(("loss (last step)", f"{r['loss']:.4f} finite={r['finite']}"))
    else:
        for name, v in r["step_time_lower_bound_s"].items():
            rows.append((f"step time on {name}", "  ".join(f"{k}: {s:.3g} s" for k, s in v.items()
                                                            if k.startswith(("mfu", "hardware"))) +
                         f"  (HBM {v['hbm_gib']} GiB)"))
    rows.append(("peak host RSS", f"{r['peak_rss_gib']:.2f} GiB"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None) -> dict:
    args, overrides = parse_args(argv)
    args.overrides = overrides
    if args.plan:
        if "jax" in sys.modules:
            raise SystemExit("--plan must run before jax is imported (it sets XLA_FLAGS)")
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={args.devices}")
        if not any(f.startswith("--xla_cpu_scheduler_type") for f in flags) and args.plan_scheduler == "memory":
            flags.append("--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED")
        if not args.plan_full_codegen:  # fast LLVM codegen: the plan never runs the code
            flags += ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
        dump = args.dump_dir or tempfile.mkdtemp(prefix="genxd_plan_dump_")
        args.dump_dir, args.remove_dump = dump, not args.dump_dir
        flags += [f"--xla_dump_to={dump}", "--xla_dump_hlo_module_re=^jit_train_step$"]
        if args.remove_dump:  # a dump the user asked for keeps the op names
            flags.append("--xla_dump_disable_metadata=true")
        os.environ["XLA_FLAGS"] = " ".join(flags)
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    report = plan(args) if args.plan else run(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    if args.plan:
        if args.remove_dump:
            shutil.rmtree(args.dump_dir, ignore_errors=True)
        if not report["compile_finished"]:  # the compile thread cannot be stopped: leave without joining it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return report


if __name__ == "__main__":
    main()
