"""The second-order samplers (Heun, DPM-Solver++(2M)) against the exact ODE solution and against Euler.

Toy problems where the probability-flow ODE dx/dσ = (x − D(x; σ))/σ is known:

- Gaussian data N(μ, s²): D(x; σ) = μ + s²/(s² + σ²)·(x − μ), and the exact flow is
  x(σ) = μ + (x(σ_max) − μ)·√(s² + σ²)/√(s² + σ_max²).
- A two-component Gaussian mixture (non-linear D): the reference is SciPy's adaptive RK45 at rtol 1e-10 in
  float64, integrated in ln σ.

Both use the released Karras schedule (σ_max 700, σ_min 0.002, ρ 7, then 0) and the pipeline's initial scale
√(σ_max² + 1). Then the pipeline on the tiny fixture: every sampler is selectable, one step of any sampler is
the same Euler step, and the default stays the official loop (tests/test_pipeline.py holds the parity).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from genxd_jax import pipeline as P
from genxd_jax.diffusion import SchedulerConfig, set_timesteps, solvers

SIGMA_MAX, SIGMA_MIN = 700.0, 0.002
MU, S2 = 0.3, 0.25  # the Gaussian toy: mean and variance
MIX_W, MIX_MU, MIX_S2 = np.array([0.3, 0.7]), np.array([-1.0, 0.8]), np.array([0.09, 0.16])


def schedule(n):
    return jnp.asarray(set_timesteps(SchedulerConfig(), n).sigmas)


def initial_x(size=256, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(size) * np.sqrt(SIGMA_MAX**2 + 1.0)).astype(np.float32)


def gaussian_denoiser(sigmas):
    return lambda x, i: MU + S2 / (S2 + sigmas[i] ** 2) * (x - MU)


def mixture_d(x, sigma, xp=jnp):
    """Posterior mean E[x0 | x] of the 1-D mixture at noise σ (elementwise)."""
    var = MIX_S2 + sigma**2  # (2,) per component
    x = x[..., None]
    logp = xp.log(MIX_W) - 0.5 * (x - MIX_MU) ** 2 / var - 0.5 * xp.log(var)
    logp = logp - logp.max(axis=-1, keepdims=True)
    p = xp.exp(logp)
    p = p / p.sum(axis=-1, keepdims=True)
    return (p * (MIX_MU + MIX_S2 / var * (x - MIX_MU))).sum(axis=-1)


def mixture_reference(x0):
    """x at σ = 0 from x0 at σ_max, float64 RK45 in t = ln σ (dx/dt = x − D), then the σ_min → 0 limit D."""

    def rhs(t, x):
        return x - mixture_d(x, np.exp(t), xp=np)

    sol = solve_ivp(rhs, (np.log(SIGMA_MAX), np.log(SIGMA_MIN)), np.asarray(x0, np.float64), rtol=1e-10,
                    atol=1e-10, method="RK45")
    return mixture_d(sol.y[:, -1], SIGMA_MIN, xp=np)


@pytest.fixture(scope="module")
def run():
    """Jitted solver runs, cached by (sampler, steps, problem)."""
    cache = {}

    def go(sampler, n, problem="gaussian"):
        key = (sampler, n, problem)
        if key not in cache:
            sig = schedule(n)
            if problem == "gaussian":
                fn = gaussian_denoiser(sig)
            else:
                fn = lambda x, i: mixture_d(x, sig[i])  # noqa: E731
            cache[key] = np.asarray(jax.jit(lambda x: solvers.solve(sampler, fn, x, sig))(initial_x()))
        return cache[key]

    return go


def rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def gaussian_exact():
    return MU + (initial_x().astype(np.float64) - MU) * np.sqrt(S2) / np.sqrt(S2 + SIGMA_MAX**2)


@pytest.mark.parametrize("sampler,order", [("euler", 1.0), ("heun", 2.0), ("dpmpp2m", 2.0)])
def test_convergence_order_on_the_exact_gaussian_flow(run, sampler, order):
    exact = gaussian_exact()
    steps = [16, 32, 64]
    errors = [rms(run(sampler, n), exact) for n in steps]
    slopes = -np.diff(np.log2(errors))  # error ∝ N^(−order): halving the step size divides it by 2^order
    assert np.all(np.diff(errors) < 0), errors
    assert np.all(np.abs(slopes - order) < 0.35), (errors, slopes)
    assert errors[-1] < (0.05 if order == 1 else 0.005)


def test_second_order_beats_euler(run):
    exact = gaussian_exact()
    euler = rms(run("euler", 32), exact)
    heun = rms(run("heun", 32), exact)  # same steps, 63 evaluations
    dpm = rms(run("dpmpp2m", 32), exact)  # same 32 evaluations
    assert heun < euler / 3 and dpm < euler / 3, (euler, heun, dpm)


@pytest.mark.parametrize("sampler", solvers.SAMPLERS)
def test_all_samplers_converge_to_the_same_nonlinear_solution(run, sampler):
    reference = mixture_reference(initial_x())
    coarse, fine = rms(run(sampler, 16, "mixture"), reference), rms(run(sampler, 128, "mixture"), reference)
    assert fine < coarse / (6 if sampler == "euler" else 20), (coarse, fine)
    assert fine < (3e-2 if sampler == "euler" else 2e-3)  # measured 0.025 and 0.0012


def test_many_step_solutions_agree_with_each_other(run):
    euler, heun, dpm = (run(s, 128, "mixture") for s in solvers.SAMPLERS)
    assert rms(heun, dpm) < 2.5e-3
    assert rms(euler, heun) < 3e-2


@pytest.mark.parametrize("sampler", solvers.SAMPLERS)
def test_model_evaluations_are_counted_exactly(sampler):
    calls = []
    sig = schedule(5)
    base = gaussian_denoiser(sig)

    def counted(x, i):
        jax.debug.callback(lambda i: calls.append(int(i)), i)
        return base(x, i)

    jax.block_until_ready(jax.jit(lambda x: solvers.solve(sampler, counted, x, sig))(initial_x(8)))
    jax.effects_barrier()
    assert len(calls) == solvers.num_model_evaluations(sampler, 5)
    assert len(calls) == (9 if sampler == "heun" else 5)
    assert max(calls) == 4  # the last level evaluated is σ_{N−1}: the step to σ = 0 is Euler


def test_heun_corrects_the_last_step_when_it_ends_above_zero():
    sig = jnp.asarray(set_timesteps(SchedulerConfig(final_sigmas_type="sigma_min"), 4).sigmas)
    assert solvers.num_model_evaluations("heun", 4, final_sigma_zero=False) == 8
    exact = MU + (initial_x().astype(np.float64) - MU) * np.sqrt(S2 + SIGMA_MIN**2) / np.sqrt(S2 + SIGMA_MAX**2)
    out = np.asarray(solvers.solve("heun", gaussian_denoiser(sig), initial_x(), sig))
    assert np.all(np.isfinite(out)) and rms(out, exact) < rms(initial_x(), exact)


def test_generic_euler_is_the_official_step():
    from genxd_jax.diffusion import denoised_from_v, euler_step

    sig = schedule(6)
    rng = np.random.default_rng(1)
    v = jnp.asarray(rng.standard_normal((6, 32)), jnp.float32)  # a fixed "network output" per level
    x0 = jnp.asarray(initial_x(32))
    out = solvers.sample_euler(lambda x, i: denoised_from_v(v[i], x, sig[i]), x0, sig)
    x = x0
    for i in range(6):
        x = euler_step(v[i], x, sig[i], sig[i + 1])
    np.testing.assert_allclose(np.asarray(out), np.asarray(x), rtol=1e-6, atol=1e-6)


def test_bad_sampler_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown sampler 'ddim'.*euler, heun, dpmpp2m"):
        solvers.solve("ddim", lambda x, i: x, jnp.zeros(2), schedule(2))
    with pytest.raises(ValueError, match="num_steps"):
        solvers.num_model_evaluations("heun", 0)


# -- the pipeline -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe(tiny_a):
    return P.GenXDPipeline.from_pretrained(tiny_a)


@pytest.fixture(scope="module")
def inputs(tiny_a):
    z = np.load(tiny_a / "pipeline_io.npz")
    return dict(
        context_images=z["context_image"][0].transpose(0, 2, 3, 1),
        context_index=z["context_index"],
        target_c2w=z["target_c2w"],
        intrinsics=z["intrinsics"],
        guidance_scale=float(z["guidance_scale"]),
        indicator=int(z["indicator"]),
        motion_strength=float(z["motion_strength"]),
        init_noise=z["init_noise"][0].transpose(0, 2, 3, 1),
    )


@pytest.fixture(scope="module")
def two_steps(pipe, inputs):
    """Each sampler's frames and progress reports on 2 steps (one compiled program per sampler)."""
    out = {}
    for sampler in solvers.SAMPLERS:
        steps = []
        frames = pipe(**inputs, num_inference_steps=2, sampler=sampler, progress=steps.append)
        out[sampler] = frames, steps
    return out


def test_pipeline_samplers_on_two_steps(two_steps):
    """Two steps σ_max → σ_1 → 0: DPM-Solver++(2M) is first order on both (its first step is the exponential
    integrator, which is Euler's step for this ODE; the last goes to D), so it equals Euler; Heun corrects the
    first step, so it differs."""
    euler = two_steps["euler"][0]
    for sampler, (frames, steps) in two_steps.items():
        assert frames.shape == euler.shape and np.all(np.isfinite(frames)), sampler
        assert frames.min() >= 0.0 and frames.max() <= 1.0
        assert sorted(steps) == [1, 2], (sampler, steps)  # progress once per step, from inside the loop
    # Euler's x + (x − D)/σ·(σ' − σ) cancels x (|x| ≈ σ_max = 700) in float32 (~1e-4 on the latents); the
    # decoded frames inherit that.
    np.testing.assert_allclose(two_steps["dpmpp2m"][0], euler, rtol=0, atol=2e-4)
    assert np.abs(two_steps["heun"][0] - euler).max() > 1e-3


def test_pipeline_rejects_an_unknown_sampler(pipe, inputs):
    with pytest.raises(ValueError, match="unknown sampler"):
        pipe(**inputs, num_inference_steps=2, sampler="ddpm")


def test_generate_cli_lists_the_samplers():
    from genxd_jax.generate import build_parser

    parser = build_parser()
    assert parser.get_default("sampler") == "euler"
    assert parser.parse_args(["--checkpoint", "c", "--image", "i", "--output", "o", "--sampler", "dpmpp2m"]
                             ).sampler == "dpmpp2m"
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "c", "--image", "i", "--output", "o", "--sampler", "lms"])


@pytest.mark.parametrize("sampler", solvers.SAMPLERS)
def test_traced_step_count_on_a_padded_schedule(sampler):
    """One program for every step count: ``num_steps`` traced, the schedule padded with arbitrary levels."""
    sig = schedule(5)
    padded = jnp.concatenate([sig, jnp.full((6,), 3.0, jnp.float32)])
    run_padded = jax.jit(lambda x, n: solvers.solve(sampler, gaussian_denoiser(padded), x, padded, num_steps=n))
    expected = solvers.solve(sampler, gaussian_denoiser(sig), initial_x(), sig)
    np.testing.assert_allclose(np.asarray(run_padded(initial_x(), jnp.int32(5))), np.asarray(expected),
                               rtol=1e-6, atol=1e-5)


# -- sampling on sharded parameters (the training loop's periodic evaluation) -------------------------------


def test_sampling_on_fsdp_sharded_parameters_gathers_nothing(tiny_a, inputs, two_steps):
    """FSDP-sharded UNet parameters (8 fake devices): the compiled loop takes them sharded, the result equals
    the single-device run."""
    from genxd_jax.models import load_unet, load_vae
    from genxd_jax.sharding import make_mesh, shard_module

    mesh = make_mesh({"data": 1, "fsdp": 8})
    unet = shard_module(load_unet(tiny_a / "unet"), mesh)
    sharded = P.GenXDPipeline(unet, load_vae(tiny_a / "vae"), SchedulerConfig.from_pretrained(tiny_a / "scheduler"))
    assert sharded._mesh is not None and sharded._mesh.size == 8
    leaves = jax.tree.leaves(sharded._unet_state)
    split = [x for x in leaves if not x.sharding.is_fully_replicated]
    assert sum(x.size for x in split) > 0.5 * sum(x.size for x in leaves)  # most parameters are sharded
    frames = sharded(**inputs, num_inference_steps=2, progress=lambda _: None)
    np.testing.assert_allclose(frames, two_steps["euler"][0], rtol=0, atol=1e-4)
    # The program is partitioned 8 ways with the parameters' FSDP shardings on its arguments (Shardy
    # annotations in the lowered module), not replicated copies.
    prepared = sharded.prepare(**{k: v for k, v in inputs.items() if k != "guidance_scale"},
                               guidance_scale=inputs["guidance_scale"], num_inference_steps=2)
    text = P._denoise.lower(sharded._unet_graph, sharded._unet_state, prepared.latents,
                            jnp.asarray(prepared.schedule.sigmas), jnp.asarray(prepared.schedule.timesteps),
                            prepared.conditioning, jnp.float32(3.0), progress=False).as_text()
    assert "num_partitions = 8" in text
    assert text.count('"fsdp"') >= len(split), "the parameters should enter the program sharded over fsdp"
