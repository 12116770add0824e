"""Training smoke tests on the tiny stage-3 config: loss, resume equivalence, config validation.

The three short runs share a persistent XLA compilation cache (``$GENXD_TEST_XLA_CACHE``, default under the
system temp dir), so only the first run of a fresh machine pays the full compile.
"""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))

import stage3  # noqa: E402

from genxd_jax import train  # noqa: E402

CACHE = os.environ.get("GENXD_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(), "genxd_jax_test_xla_cache"))


def tiny_config(num_steps: int, checkpoint_every: int):
    c = stage3.get_config("tiny")
    c.num_train_steps = num_steps
    c.checkpoint_every_steps = checkpoint_every
    c.optimizer.learning_rate = 1e-3  # large enough for the loss to move in a few steps
    c.optimizer.warmup_steps = 0
    c.diffusion.p_std = 0.3  # narrower σ spread: less noisy loss over 6 steps
    c.compilation_cache_dir = CACHE
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 6-step run, and a 3-step run resumed to 6 steps in the same workdir."""
    full = train.train_and_evaluate(tiny_config(6, 0), str(tmp_path_factory.mktemp("full")))
    resumed_dir = str(tmp_path_factory.mktemp("resumed"))
    first = train.train_and_evaluate(tiny_config(3, 3), resumed_dir)
    second = train.train_and_evaluate(tiny_config(6, 3), resumed_dir)
    return full, first, second, resumed_dir


def test_tiny_run_loss_finite_and_decreasing(runs):
    full, _, _, _ = runs
    losses = [full["losses"][s] for s in range(1, 7)]
    assert full["final_step"] == 6 and full["skipped_steps"] == 0
    assert all(math.isfinite(v) for v in losses), losses
    assert np.mean(losses[3:]) < np.mean(losses[:3]), losses


def test_resume_matches_uninterrupted(runs):
    full, first, second, resumed_dir = runs
    assert sorted(first["losses"]) == [1, 2, 3]
    assert sorted(second["losses"]) == [4, 5, 6]  # resumed at step 3, not from scratch
    for s in range(1, 4):
        np.testing.assert_allclose(first["losses"][s], full["losses"][s], rtol=1e-5)
    for s in range(4, 7):
        np.testing.assert_allclose(second["losses"][s], full["losses"][s], rtol=1e-4)
    assert sorted(int(p.name) for p in (pathlib.Path(resumed_dir) / "checkpoints").iterdir()
                  if p.name.isdigit()) == [3, 6]
    assert (pathlib.Path(resumed_dir) / "config.json").is_file()


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("data.num_frames", 1, "data.num_frames"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate"),
    ("data.batch_size", 3, "data.batch_size"),
    ("data.resolution", 36, "data.resolution"),
    ("init.source", "bogus", "init.source"),
])
def test_validation_names_field(field, value, needle):
    c = stage3.get_config("tiny")
    c.mesh.data = 2
    section, name = field.split(".")
    setattr(c[section], name, value)
    if field != "data.batch_size":
        c.data.batch_size = 2
    with pytest.raises(train.ConfigError, match=needle.replace(".", r"\.")):
        train.validate_config(c, num_devices=8, process_count=1)


def test_main_rejects_bad_config_before_compiling(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "genxd_jax.main", f"--config={REPO}/configs/stage3.py:tiny",
         f"--workdir={tmp_path}", "--config.optimizer.learning_rate=-1"],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode != 0
    assert "optimizer.learning_rate" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_pool8_autoencoder_shapes_and_roundtrip():
    import jax.numpy as jnp

    img = jnp.linspace(-1, 1, 2 * 16 * 16 * 3).reshape(2, 16, 16, 3)
    z = train.pool8_encode(img)
    assert z.shape == (2, 2, 2, 4)
    rec = train.pool8_decode(z)
    assert rec.shape == img.shape
    flat = jnp.full((1, 8, 8, 3), 0.25)
    np.testing.assert_allclose(train.pool8_decode(train.pool8_encode(flat)), flat, atol=1e-6)
