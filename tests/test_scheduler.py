"""The Euler–Karras v-prediction schedule and the shared EDM preconditioning."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genxd_jax import diffusion as d

# genxd-model.md §11: the released 25-step schedule.
SIGMAS_25 = [
    700,
    545.729,
    421.569,
    322.454,
    244.023,
    182.547,
    134.854,
    98.267,
    70.541,
    49.810,
    34.537,
    23.468,
    15.590,
    10.097,
    6.354,
    3.870,
    2.269,
    1.273,
    0.678,
    0.339,
    0.157,
    0.0664,
    0.0248,
    0.00788,
    0.002,
    0.0,
]


@pytest.fixture(scope="module")
def config(tiny_a):
    return d.SchedulerConfig.from_pretrained(tiny_a / "scheduler")


def test_released_config_parses_and_tolerates_unknown_keys(config, tiny_a):
    assert (config.sigma_min, config.sigma_max, config.rho) == (0.002, 700.0, 7.0)
    assert config.prediction_type == "v_prediction" and config.timestep_type == "continuous"
    assert config.extra["beta_schedule"] == "scaled_linear"  # unused keys are kept, not rejected
    raw = json.loads((tiny_a / "scheduler" / "scheduler_config.json").read_text())
    again = d.SchedulerConfig.from_dict({**raw, "some_future_key": [1, 2]})
    assert again == config and again.extra["some_future_key"] == [1, 2]
    assert d.SchedulerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "override,match",
    [
        ({"prediction_type": "epsilon"}, "prediction_type"),
        ({"timestep_type": "discrete"}, "timestep_type"),
        ({"use_karras_sigmas": False}, "karras"),
        ({"sigma_min": 800.0}, "sigma_min"),
    ],
)
def test_unsupported_configs_are_rejected(override, match):
    with pytest.raises(ValueError, match=match):
        d.SchedulerConfig.from_dict(override)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="scheduler config"):
        d.SchedulerConfig.from_pretrained(tmp_path)


def test_25_step_sigmas_timesteps_and_initial_sigma(config):
    s = d.set_timesteps(config, 25)
    assert s.sigmas.dtype == np.float32 and s.sigmas.shape == (26,) and s.timesteps.shape == (25,)
    np.testing.assert_allclose(s.sigmas[:-1], SIGMAS_25[:-1], rtol=3e-3)  # the spec rounds to 3–4 digits
    assert s.sigmas[0] == np.float32(700.0) and s.sigmas[-2] == np.float32(0.002) and s.sigmas[-1] == 0.0
    assert np.all(np.diff(s.sigmas) < 0)
    np.testing.assert_allclose(s.timesteps[[0, 1, 2]], [1.63777, 1.57553, 1.51100], atol=1e-5)
    np.testing.assert_allclose(s.timesteps[[-2, -1]], [-1.21078, -1.55365], atol=1e-5)
    np.testing.assert_allclose(s.timesteps, 0.25 * np.log(s.sigmas[:-1]), rtol=1e-6)
    assert s.init_noise_sigma == pytest.approx(700.000714, abs=1e-4)
    trailing = d.set_timesteps(d.SchedulerConfig(timestep_spacing="trailing"), 25)
    assert trailing.init_noise_sigma == pytest.approx(700.0)
    assert d.set_timesteps(d.SchedulerConfig(final_sigmas_type="sigma_min"), 3).sigmas[-1] == np.float32(
        0.002
    )
    with pytest.raises(ValueError, match="positive integer"):
        d.set_timesteps(config, 0)


def test_preconditioning_coefficients_and_scheduler_agree():
    sigma = jnp.asarray([0.002, 0.5, 1.0, 30.0, 700.0])
    c_skip, c_out, c_in, c_noise = d.edm_preconditioning(sigma)
    s = np.asarray(sigma, np.float64)
    np.testing.assert_allclose(c_skip, 1 / (s**2 + 1), rtol=1e-6)
    np.testing.assert_allclose(c_out, -s / np.sqrt(s**2 + 1), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + 1), rtol=1e-6)
    np.testing.assert_allclose(c_noise, 0.25 * np.log(s), rtol=1e-6)
    x = jnp.ones((5, 3))
    np.testing.assert_allclose(d.scale_model_input(x, sigma[3]), c_in[3] * x, rtol=1e-6)
    # Loss weight: 1 / c_out² (= (σ² + 1)/σ²), the EDM weighting with σ_data = 1.
    np.testing.assert_allclose(d.edm_loss_weight(sigma), 1 / np.asarray(c_out) ** 2, rtol=1e-5)


def test_v_target_round_trip_and_batched_sigma():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    clean = jax.random.normal(k1, (4, 2, 3, 3, 4))
    noise = jax.random.normal(k2, clean.shape)
    sigma = d.sample_training_sigmas(k3, (4,))
    v = d.v_target(clean, noise, sigma)
    x = clean + sigma[:, None, None, None, None] * noise
    np.testing.assert_allclose(d.denoised_from_v(v, x, sigma), clean, atol=1e-4)


def test_euler_step_matches_diffusers_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3)).astype(np.float32) * 50
    out = rng.normal(size=(2, 3)).astype(np.float32)
    sigma, nxt = np.float32(49.81), np.float32(34.537)
    x0 = out * (-sigma / np.sqrt(sigma**2 + 1)) + x / (sigma**2 + 1)
    expected = x + (x - x0) / sigma * (nxt - sigma)
    np.testing.assert_allclose(d.euler_step(out, x, sigma, nxt), expected, rtol=1e-5)
    np.testing.assert_allclose(d.euler_step(out, x, sigma, 0.0), x0, rtol=1e-5, atol=1e-5)  # last step -> x̂₀


def test_sampler_with_an_exact_denoiser_lands_on_the_data(config):
    """If the network predicts the exact v for a single data point, the Euler–Karras loop returns it."""
    target = jnp.asarray([[0.3, -1.2], [2.0, 0.5]])
    s = d.set_timesteps(config, 25)

    def body(i, x):
        sigma, nxt = jnp.asarray(s.sigmas)[i], jnp.asarray(s.sigmas)[i + 1]
        c_skip, c_out, _, _ = d.edm_preconditioning(sigma)
        v = (target - c_skip * x) / c_out  # D(x; σ) = target exactly
        return d.euler_step(v, x, sigma, nxt)

    x0 = jax.random.normal(jax.random.key(1), target.shape) * s.init_noise_sigma
    final = jax.lax.fori_loop(0, 25, body, x0)
    np.testing.assert_allclose(final, target, atol=1e-4)


def test_training_sigmas_are_log_normal():
    sig = d.sample_training_sigmas(jax.random.key(2), (20000,), p_mean=0.7, p_std=1.6)
    assert sig.shape == (20000,) and sig.dtype == jnp.float32 and bool(jnp.all(sig > 0))
    log = np.log(np.asarray(sig))
    assert log.mean() == pytest.approx(0.7, abs=0.05)
    assert log.std() == pytest.approx(1.6, abs=0.05)
    with pytest.raises(ValueError, match="p_std"):
        d.sample_training_sigmas(jax.random.key(0), (2,), p_std=-1.0)


def test_with_karras_schedule_replaces_the_three_numbers(config):
    assert d.with_karras_schedule(config, None) is config
    fast = d.with_karras_schedule(config, "40:0.1:10")
    assert (fast.sigma_max, fast.sigma_min, fast.rho) == (40.0, 0.1, 10.0)
    assert fast.prediction_type == config.prediction_type and fast.final_sigmas_type == config.final_sigmas_type
    sched = d.set_timesteps(fast, 10)
    np.testing.assert_allclose(sched.sigmas[[0, 9, 10]], [40.0, 0.1, 0.0], rtol=1e-6)
    ramp = (40.0 ** 0.1 + np.linspace(0, 1, 10) * (0.1 ** 0.1 - 40.0 ** 0.1)) ** 10
    np.testing.assert_allclose(sched.sigmas[:10], ramp, rtol=1e-6)
    np.testing.assert_allclose(sched.init_noise_sigma, np.sqrt(40.0**2 + 1), rtol=1e-6)
    for bad in ("40:0.1", "a:b:c", "0.1:40:7", "40:0.1:0", "inf:0.1:7"):
        with pytest.raises(ValueError, match="schedule"):
            d.with_karras_schedule(config, bad)
