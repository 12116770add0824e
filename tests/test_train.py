"""Training on the tiny stage-3 config, in process: loss, resume, sharding equivalence, non-finite steps,
initialisation sources, restore onto another mesh, the real VAE in bf16 with remat, periodic evaluation.

Runs share a persistent XLA compilation cache (``$GENXD_TEST_XLA_CACHE``, default under the system temp dir),
so only the first run on a fresh machine pays the full compile. Subprocess tests (SIGKILL/SIGTERM, two
processes) are in test_train_processes.py.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))

import stage3  # noqa: E402

from genxd_jax import checkpointing, sharding, train, train_step  # noqa: E402
from genxd_jax.data import make_train_dataset  # noqa: E402
from genxd_jax.models import Pool8Autoencoder  # noqa: E402

CACHE = os.environ.get("GENXD_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(), "genxd_jax_test_xla_cache"))


def tiny_config(num_steps: int, checkpoint_every: int = 0):
    c = stage3.get_config("tiny")
    c.num_train_steps = num_steps
    c.checkpoint_every_steps = checkpoint_every
    c.optimizer.learning_rate = 1e-3  # large enough for the loss to move in a few steps
    c.optimizer.warmup_steps = 0
    c.diffusion.p_std = 0.3  # narrower σ spread: less noisy loss over 6 steps
    c.eval.every_steps = 0
    c.compilation_cache_dir = CACHE
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 6-step run, and a 3-step run resumed to 6 steps in the same workdir."""
    full = train.train_and_evaluate(tiny_config(6), str(tmp_path_factory.mktemp("full")))
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


# ----------------------------------------------------------------------------------------------------------
# sharding: one device vs data 2 × fsdp 4, and non-finite steps


def _mesh(data: int, fsdp: int):
    return sharding.make_mesh({"data": data, "fsdp": fsdp}, devices=jax.devices()[: data * fsdp])


def _state_and_step(config, mesh):
    tx, _ = train_step.make_optimizer(config)
    graphdef, state = train_step.create_train_state(config, tx, mesh)
    step, ae_state = train_step.make_train_step(config, graphdef, Pool8Autoencoder(), train_step.shardings_of(state),
                                                mesh)
    return state, step, ae_state


def _host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


@pytest.fixture(scope="module")
def batches():
    c = tiny_config(3)
    c.data.batch_size = 8
    it = iter(make_train_dataset(c.data, seed=0, process_index=0, process_count=1))
    return [next(it) for _ in range(3)]


def test_one_device_and_eight_devices_agree(batches):
    """3 steps on 1 device and on a data 2 × fsdp 4 mesh of 8 fake CPU devices, the same global batches.

    Only reduction orders differ. Losses agree to 1e-5 relative, parameters and moments to 1e-5 absolute. Adam's
    eps is raised to 1e-3 here: with the default 1e-8, Adam divides by √v, so a gradient entry that is ~0 (pure
    rounding noise) in both runs still moves its parameter by up to the LR in a random direction, and the runs
    differ by up to 1.2e-4 (measured) in such entries although every gradient agrees to rounding."""
    assert jax.device_count() >= 8
    results = []
    for data, fsdp in ((1, 1), (2, 4)):
        c = tiny_config(3)
        c.mesh.data, c.mesh.fsdp = data, fsdp
        c.data.batch_size = 8
        c.optimizer.eps = 1e-3
        mesh = _mesh(data, fsdp)
        state, step, ae_state = _state_and_step(c, mesh)
        losses = []
        with jax.set_mesh(mesh):
            for b in batches:
                state, metrics = step(state, train_step.to_global_batch(b, mesh), ae_state)
                losses.append(float(metrics["loss"]))
        if fsdp > 1:  # the parameters really are sharded over fsdp
            specs = {x.sharding.spec for x in jax.tree.leaves(state["params"])}
            assert any("fsdp" in str(s) for s in specs), specs
        results.append((losses, _host(state["params"]), _host(state["opt"])))
    (l1, p1, o1), (l8, p8, o8) = results
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), p8, p1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), o8, o1)


def test_non_finite_step_is_skipped_and_counted(batches):
    c = tiny_config(3)
    c.data.batch_size = 8
    mesh = _mesh(1, 1)
    state, step, ae_state = _state_and_step(c, mesh)
    before = _host(state["params"])
    bad = dict(batches[0])
    bad["images"] = bad["images"].copy()
    bad["images"][0, 1, 0, 0, 0] = np.nan
    with jax.set_mesh(mesh):
        state, metrics = step(state, train_step.to_global_batch(bad, mesh), ae_state)
        assert not math.isfinite(float(metrics["loss"]))
        assert float(metrics["finite"]) == 0.0 and int(metrics["skipped_steps"]) == 1
        assert int(state["step"]) == 1 and int(state["skipped"]) == 1
        jax.tree.map(np.testing.assert_array_equal, _host(state["params"]), before)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(_host(state["opt"])))
        state, metrics = step(state, train_step.to_global_batch(batches[1], mesh), ae_state)
    assert float(metrics["finite"]) == 1.0 and int(state["skipped"]) == 1
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), _host(state["params"]), before)
    assert any(jax.tree.leaves(changed))


# ----------------------------------------------------------------------------------------------------------
# initialisation sources and restoring onto another mesh


def _initial_params(config, mesh=None):
    mesh = mesh or _mesh(1, 1)
    tx, _ = train_step.make_optimizer(config)
    manager = checkpointing.make_manager(tempfile.mkdtemp(), asynchronous=False)
    graphdef, state = train.initial_state(config, tx, mesh, manager)
    manager.close()
    assert int(state["step"]) == 0
    return graphdef, state


def test_init_from_genxd_checkpoint(tiny_a):
    from genxd_jax.models import load_unet

    c = tiny_config(1)
    c.model.unet_config_path = str(tiny_a / "unet" / "config.json")
    c.init.source = f"genxd:{tiny_a / 'unet'}"
    _, state = _initial_params(c)
    expected = nnx.to_pure_dict(nnx.state(load_unet(tiny_a / "unet"), nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, _host(state["params"]), _host(expected))


def test_init_from_svd_matches_the_official_initialisation(fixtures_dir):
    from genxd_jax.convert.safetensors_io import read_released_dir
    from genxd_jax.convert.torch_layout import flat_torch_state

    root = fixtures_dir / "svd-init-tiny"
    c = tiny_config(1)
    c.model.unet_config_path = str(root / "genxd_unet" / "config.json")
    c.init.source = f"svd:{root / 'svd_unet'}"
    graphdef, state = _initial_params(c)
    ours = flat_torch_state(nnx.merge(graphdef, _host(state["params"])))
    _, official = read_released_dir(root / "genxd_unet")
    from_svd = json.loads((root / "sources.json").read_text())["from_svd"]
    assert len(from_svd) > 100
    for key in from_svd:
        np.testing.assert_array_equal(ours[key], official[key], err_msg=key)


def test_init_from_workdir_and_restore_onto_another_mesh(runs):
    _, _, _, resumed_dir = runs
    mesh8 = _mesh(2, 4)
    c = tiny_config(1)
    c.init.source = f"workdir:{resumed_dir}"
    _, state = _initial_params(c, mesh8)  # parameters of the other run's step 6, fresh optimiser, step 0

    manager = checkpointing.make_manager(resumed_dir, asynchronous=False)
    tx, _ = train_step.make_optimizer(c)
    _, abstract8 = train_step.abstract_train_state(c, tx, mesh8)
    step, restored = checkpointing.restore(manager, abstract8, None)  # saved on 1 device, restored on 8
    manager.close()
    assert step == 6 and int(restored["step"]) == 6
    jax.tree.map(np.testing.assert_array_equal, _host(state["params"]), _host(restored["params"]))
    for leaf, want in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract8)):
        assert leaf.sharding == want.sharding
    mu = optax.tree_utils.tree_get(state["opt"], "mu")  # the optimiser starts afresh
    assert all(not np.any(x) for x in jax.tree.leaves(_host(mu)))


# ----------------------------------------------------------------------------------------------------------
# the real VAE, bf16 compute, remat, periodic evaluation


def test_real_vae_bf16_remat_with_periodic_eval(tiny_a, tmp_path):
    c = tiny_config(2)
    c.model.unet_config_path = str(tiny_a / "unet" / "config.json")
    c.init.source = f"genxd:{tiny_a / 'unet'}"
    c.vae.path = str(tiny_a / "vae")
    c.vae.scaling_factor = 0.18215
    c.model.dtype = "bfloat16"
    c.model.remat_policy = "full"
    c.ema_decay = 0.99
    c.eval.every_steps = 2
    c.eval.num_scenes = 1
    c.eval.num_inference_steps = 2
    result = train.train_and_evaluate(c, str(tmp_path))
    assert result["final_step"] == 2 and all(math.isfinite(v) for v in result["losses"].values())
    metrics = result["eval"][2]
    for key in ("psnr", "ssim", "psnr_copy_nearest", "psnr_3d", "psnr_4d", "psnr_gain"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert 0.0 < metrics["psnr"] < 60.0
    samples = tmp_path / "samples"
    line = json.loads((samples / "eval.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 2 and line["psnr"] == pytest.approx(metrics["psnr"])
    from PIL import Image

    grid = np.asarray(Image.open(samples / "step_0000002" / "3d_0.png"))
    assert grid.shape == (3 * 32, 4 * 32, 3)  # rows: ground truth, generated, copy-nearest; 4 frames
    assert (samples / "step_0000002" / "4d_0.gif").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------------------
# config validation and the autoencoder stand-in


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("data.num_frames", 1, "data.num_frames"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate"),
    ("data.batch_size", 3, "data.batch_size"),
    ("data.resolution", 36, "data.resolution"),
    ("init.source", "bogus", "init.source"),
    ("eval.num_inference_steps", 0, "eval.num_inference_steps"),
    ("eval.kinds", ("2d",), "eval.kinds"),
    ("model.attention_impl", "flash", "model.attention_impl"),
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
    ae = Pool8Autoencoder()
    img = jnp.linspace(-1, 1, 2 * 16 * 16 * 3).reshape(2, 16, 16, 3)
    mean, logvar = ae.encode(img)
    assert mean.shape == logvar.shape == (2, 2, 2, 4)
    np.testing.assert_allclose(mean[..., :3], img.reshape(2, 2, 8, 2, 8, 3).mean(axis=(2, 4)), atol=1e-6)
    assert ae.decode(mean, num_frames=2).shape == img.shape
    flat = jnp.full((1, 8, 8, 3), 0.25)
    np.testing.assert_allclose(ae(flat), flat, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 8"):
        ae.encode(jnp.zeros((1, 12, 16, 3)))
    with pytest.raises(ValueError, match="num_frames"):
        ae.decode(mean, num_frames=3)
