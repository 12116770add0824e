"""benchmarks/train_step.py on the tiny stage-3 config: run mode (2 timed steps) and plan mode (4 fake devices),
plus the plan mode's reader of XLA's buffer-assignment dump.

The two modes run in subprocesses (plan mode must set XLA_FLAGS before jax is imported). Run mode shares the
persistent XLA compilation cache of the training tests (``$GENXD_TEST_XLA_CACHE``); plan mode cannot (a cache
hit writes no buffer-assignment dump) and compiles the tiny step each time (~20 s to buffer assignment).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "train_step.py"
CACHE = os.environ.get("GENXD_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(), "genxd_jax_test_xla_cache"))


def load_script():
    spec = importlib.util.spec_from_file_location("train_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(tmp_path, *args: str, timeout: int = 420) -> dict:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # run mode: one CPU device
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", "configs/stage3.py:tiny", "--json", str(out),
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FLOPs/step" in proc.stdout
    return json.loads(out.read_text())


def check_common(r: dict, devices: int, global_batch: int) -> None:
    assert r["num_devices"] == devices and r["global_batch"] == global_batch
    assert r["frames"] == 4 and r["resolution"] == 32 and r["dtype"] == "float32"
    assert 1_000_000 < r["params"] < 3_000_000  # the tiny UNet: 1.68 M
    state = r["state_bytes_per_device"]
    # float32 params, AdamW mu + nu: opt ≈ 2 × params (+ counters); per device = total / fsdp
    assert state["params"] == pytest.approx(r["params"] * 4 / devices, rel=0.05)
    assert state["opt"] == pytest.approx(2 * state["params"], rel=0.05)
    assert state["total"] >= state["params"] + state["opt"]
    mem = r["memory_per_device"]
    for key in ("argument", "output", "temp"):
        assert mem[key] > 0, mem
    assert mem["argument"] >= state["total"]  # the state is an argument of the step
    assert mem["peak_estimate"] > 0
    assert r["lower_s"] > 0
    flops = r["flops"]
    assert flops["model_per_device"] > 1e6
    assert flops["model_total"] == pytest.approx(flops["model_per_device"] * devices)
    assert flops["hardware_total"] == flops["model_total"]  # no remat in the tiny config
    if r["compile_s"] is not None:
        assert r["compile_s"] > 0
        # no attention loop at this size: XLA's count of the compiled step and the re-lowered count agree roughly
        assert flops["model_per_device"] == pytest.approx(flops["xla_per_device"], rel=0.3)


PARSER_CHECK = """
import json, pathlib, sys
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
sys.path.insert(0, "tests")
from test_train_step_benchmark import load_script
bench_module = load_script()
dump_dir = pathlib.Path(sys.argv[1])
mesh = jax.make_mesh((len(jax.devices()),), ("x",))
row = NamedSharding(mesh, PartitionSpec("x"))
step = jax.jit(lambda a, b: (jnp.tanh(a @ b).sum(0) * 2, b + 1), in_shardings=(row, None), donate_argnums=(1,))
a = jax.ShapeDtypeStruct((64, 256), jnp.float32, sharding=row)
b = jax.ShapeDtypeStruct((256, 256), jnp.float32)
compiled = step.lower(a, b).compile({"xla_dump_to": str(dump_dir)})
dumps = sorted(dump_dir.glob("*after_optimizations-buffer-assignment.txt"))
print(json.dumps({"dumps": len(dumps), "parsed": bench_module.parse_buffer_assignment(dumps[0]) if dumps else None,
                  "expected": bench_module.memory_of(compiled)}))
"""


def test_buffer_assignment_parser_matches_memory_analysis(tmp_path):
    """The plan-mode reader of XLA's buffer-assignment dump sums what ``memory_analysis()`` reports.

    Runs in a fresh interpreter: once another test has switched on the persistent compilation cache (a process-wide,
    sticky switch in jax), a cache hit skips XLA's passes and writes no dump.
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", PARSER_CHECK, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["dumps"] == 1
    assert r["parsed"] == r["expected"]
    assert r["parsed"]["alias"] == 256 * 256 * 4 and r["parsed"]["argument"] > r["parsed"]["alias"]


@pytest.mark.slow
def test_run_mode_tiny(tmp_path):
    r = bench(tmp_path, "--steps", "2", "--warmup", "1", "--peak-tflops", "1", "--cache-dir", CACHE)
    assert r["mode"] == "run" and r["backend"] == "cpu"
    check_common(r, devices=1, global_batch=2)
    st = r["step_time_s"]
    assert len(st["all"]) == 2 and 0 < st["min"] <= st["median"] <= st["p90"]
    assert r["examples_per_s"] == pytest.approx(2 / st["median"])
    assert r["achieved_tflops_per_device"]["model"] > 0
    assert 0 < r["mfu"] < 1 and r["peak_tflops"] == 1
    assert math.isfinite(r["loss"]) and r["finite"]


@pytest.mark.slow
def test_plan_mode_tiny_four_devices(tmp_path):
    # no compilation cache: a cache hit skips XLA's passes, so there would be no buffer-assignment dump to read
    r = bench(tmp_path, "--plan", "--devices", "4")
    assert r["mode"] == "plan" and r["backend"] == "cpu" and r["attention"] == "xla"
    assert r["mesh"] == {"data": 1, "fsdp": 4}
    assert "--xla_force_host_platform_device_count=4" in r["xla_flags"]
    check_common(r, devices=4, global_batch=4)  # default: one example per device
    if not r["compile_finished"]:  # the usual case: memory read from the dump, compile abandoned
        assert r["memory_source"].startswith("buffer-assignment dump")
        assert r["memory_per_device"] == r["memory_per_device_dump"]
    assert r["buffer_assignment_s"] > 0
    bounds = r["step_time_lower_bound_s"]["H100 SXM"]
    assert bounds["mfu_0.4"] == pytest.approx(r["flops"]["model_per_device"] / (0.4 * 989e12))
