"""`python -m genxd_jax.main` as real processes: SIGKILL and resume, SIGTERM (preemption) saves, and a
2-process `jax.distributed` run on localhost (CPU collectives) against the same run in one process.

Each subprocess uses the tests' persistent compilation cache (see test_train.py) and the tiny stage-3 config.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genxd_jax import checkpointing, sharding, train, train_step

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_train import CACHE, tiny_config  # noqa: E402

TIMEOUT = 600  # seconds for any one subprocess run (a cold compile on a slow 2-core machine included)


def main_args(workdir, num_steps: int, checkpoint_every: int, *extra: str) -> list[str]:
    """The command line equal to ``tiny_config(num_steps, checkpoint_every)`` plus ``extra`` overrides."""
    return [sys.executable, "-m", "genxd_jax.main", f"--config={REPO}/configs/stage3.py:tiny", f"--workdir={workdir}",
            f"--config.num_train_steps={num_steps}", f"--config.checkpoint_every_steps={checkpoint_every}",
            "--config.optimizer.learning_rate=0.001", "--config.optimizer.warmup_steps=0",
            "--config.diffusion.p_std=0.3", "--config.eval.every_steps=0", f"--config.compilation_cache_dir={CACHE}",
            *extra]


def child_env(**extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def read_losses(workdir) -> dict[int, float]:
    """``{step: loss}`` from the TensorBoard event files of a workdir (later files win)."""
    import tensorflow as tf

    out = {}
    for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "loss":
                    out[int(event.step)] = float(tf.make_ndarray(value.tensor))
    return out


def finalized_steps(workdir) -> list[int]:
    d = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def final_params(workdir, config):
    """The parameters of the workdir's latest checkpoint, restored onto one device, as numpy."""
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
    tx, _ = train_step.make_optimizer(config)
    _, abstract = train_step.abstract_train_state(config, tx, mesh)
    manager = checkpointing.make_manager(str(workdir), asynchronous=False)
    step, state = checkpointing.restore(manager, abstract, None)
    manager.close()
    return step, jax.tree.map(np.asarray, state["params"])


def wait_for(predicate, proc, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run exited (rc {proc.returncode}) before {what}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigkill_after_a_checkpoint_then_resume_reproduces_the_run(tmp_path):
    steps, every = 30, 5
    reference = train.train_and_evaluate(tiny_config(steps, every), str(tmp_path / "reference"))

    workdir = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(main_args(workdir, steps, every), cwd=REPO, env=child_env(), stdout=log, stderr=log)
    wait_for(lambda: bool(finalized_steps(workdir)), proc, TIMEOUT, "the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    at_kill = finalized_steps(workdir)
    assert at_kill and at_kill[-1] < steps, at_kill

    done = subprocess.run(main_args(workdir, steps, every), cwd=REPO, env=child_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed_from = int(re.search(r"training from step (\d+)", done.stderr).group(1))
    assert every <= resumed_from < steps  # resumed from a checkpoint, not from scratch

    losses = read_losses(workdir)
    for step in range(resumed_from + 1, steps + 1):  # data order and RNG continue exactly
        np.testing.assert_allclose(losses[step], reference["losses"][step], rtol=1e-6, err_msg=f"step {step}")
    config = tiny_config(steps, every)
    step_a, params = final_params(workdir, config)
    step_b, expected = final_params(tmp_path / "reference", config)
    assert step_a == step_b == steps
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), params, expected)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    workdir = tmp_path / "run"
    log_path = tmp_path / "run.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(main_args(workdir, 100_000, 0), cwd=REPO, env=child_env(), stdout=log, stderr=log)
    wait_for(lambda: re.search(r"\] \[3\] .*loss=", log_path.read_text()) is not None, proc, TIMEOUT, "step 3")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    text = log_path.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "preempted at step" in text
    saved = finalized_steps(workdir)
    assert len(saved) == 1 and 3 <= saved[0] < 100_000
    assert f"done: step {saved[0]}," in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def two_processes(tmp_path, args: list[str]):
    """Runs ``args`` as processes 0 and 1 of a ``jax.distributed`` job on localhost, 4 CPU devices each, the
    output of process p in ``tmp_path/process<p>.log``. Yields ``(procs, log paths)``; kills what still runs on
    exit."""
    env = child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4", GENXD_NUM_PROCESSES="2",
                    GENXD_COORDINATOR_ADDRESS=f"localhost:{free_port()}")
    procs, logs = [], [tmp_path / f"process{pid}.log" for pid in range(2)]
    try:
        for pid, log in enumerate(logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen(args, cwd=REPO, env=dict(env, GENXD_PROCESS_ID=str(pid)), stdout=out,
                                              stderr=subprocess.STDOUT))
        yield procs, logs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_two_processes_match_one_process(tmp_path):
    """data 2 × fsdp 4 over 2 processes × 4 CPU devices (gloo collectives), batch 4 per process, versus the
    same mesh over 8 devices of this process with batch 8: the data pipeline gives both the same global
    batches, so losses and parameters agree up to reduction order (Adam eps raised as in test_train)."""
    steps = 3
    overrides = ("--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.optimizer.eps=0.001")
    workdir = tmp_path / "two"
    args = main_args(workdir, steps, 0, *overrides, "--config.data.batch_size=4")
    with two_processes(tmp_path, args) as (procs, logs):
        for proc in procs:
            proc.wait(timeout=TIMEOUT)
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log.read_text()[-3000:]
    assert "over 2 processes" in logs[0].read_text()

    config = tiny_config(steps)
    config.mesh.data, config.mesh.fsdp = 2, 4
    config.data.batch_size = 8
    config.optimizer.eps = 1e-3
    reference = train.train_and_evaluate(config, str(tmp_path / "one"))

    losses = read_losses(workdir)
    for step in range(1, steps + 1):
        np.testing.assert_allclose(losses[step], reference["losses"][step], rtol=1e-5, err_msg=f"step {step}")
    _, params = final_params(workdir, config)
    _, expected = final_params(tmp_path / "one", config)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params, expected)


def test_sigterm_to_both_processes_saves_one_checkpoint_at_a_common_step(tmp_path):
    """Pod preemption: every worker gets SIGTERM. JAX's preemption notifier (polled through
    ``CheckpointManager.reached_preemption``) makes both processes stop at the same step, save it together and
    exit cleanly."""
    workdir = tmp_path / "run"
    overrides = ("--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.data.batch_size=4")
    with two_processes(tmp_path, main_args(workdir, 100_000, 0, *overrides)) as (procs, logs):
        wait_for(lambda: re.search(r"\] \[3\] .*loss=", logs[0].read_text()) is not None, procs[0], TIMEOUT,
                 "step 3")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=180)
    texts = [log.read_text() for log in logs]
    for proc, text in zip(procs, texts):
        assert proc.returncode == 0, text[-3000:]
    stops = [re.search(r"preempted at step (\d+)", text) for text in texts]
    assert all(stops), [text[-2000:] for text in texts]
    stop = int(stops[0].group(1))
    assert int(stops[1].group(1)) == stop >= 3
    assert finalized_steps(workdir) == [stop]
