"""Sampler quality vs steps: Euler, Heun and DPM-Solver++(2M) against a many-step Euler reference.

For a trained run (its workdir's latest checkpoint, EMA parameters unless ``--no-ema``), over held-out procedural
scenes (``make_eval_scenes``: a scene family training never sees; context = frame 0), every sampler at every
step count starts from the same initial noise as a ``--reference-steps`` Euler run (200 by default). Reported
per (sampler, steps), averaged over scenes:

    evals       guided UNet evaluations per sample (Euler and DPM-Solver++(2M): steps; Heun: 2·steps − 1)
    lat_rms     RMS distance of the final latents (target frames) to the reference's, in latent units
    psnr_ref    PSNR (dB) of the decoded target frames against the reference's frames
    psnr_gt     PSNR (dB) of the decoded target frames against ground truth

All samplers here run through :func:`genxd_jax.diffusion.solvers.solve` (Euler's generic form is the official
step; tests/test_solvers.py checks it), one compiled program per sampler for every step count.

``--schedules`` compares Karras schedules other than the released one (σ_max 700, σ_min 0.002, ρ 7) for the
compared samplers, as ``SIGMA_MAX:SIGMA_MIN:RHO`` triples (``released`` for the scheduler's own); the
reference always runs the released schedule. A schedule with a lower σ_max starts from the same unit noise
× √(σ_max² + 1).

Usage (the tiny model trained on the procedural data, as in benchmarks/README.md):

    python benchmarks/sampler_quality.py --workdir runs/tiny_learn --config configs/stage3.py:tiny \\
        --scenes 8 --steps 5 10 15 25 --out benchmarks/results/sampler_quality.json
    python benchmarks/sampler_quality.py --samplers euler dpmpp2m --steps 10 --schedules 80:0.002:7 80:0.05:7
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str, workdir: str):
    """The experiment config ``path[:variant]``, with the run's ``config.json`` data/model/vae fields applied."""
    import importlib.util

    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("genxd_bench_config", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(variant or "full")
    saved = os.path.join(workdir, "config.json")
    if os.path.isfile(saved):
        with open(saved) as f:
            run = json.load(f)
        with config.unlocked():
            for key in ("num_frames", "resolution"):
                config.data[key] = run["data"][key]
            config.model.unet = run["model"]["unet"]
            config.vae.path = run["vae"]["path"]
            config.vae.scaling_factor = run["vae"]["scaling_factor"]
            config.ema_decay = run["ema_decay"]
    return config


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/tiny_learn", help="training run with checkpoints/")
    p.add_argument("--config", default="configs/stage3.py:tiny", help="config file[:variant] of that run")
    p.add_argument("--scenes", type=int, default=8, help="held-out scenes per kind (3d and 4d)")
    p.add_argument("--scene-seed", type=int, default=0,
                   help="make_eval_scenes seed: a second seed gives scenes no schedule was chosen on")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 25])
    p.add_argument("--samplers", nargs="+", default=["euler", "heun", "dpmpp2m"])
    p.add_argument("--reference-steps", type=int, default=200)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--schedules", nargs="+", default=["released"],
                   help="Karras schedules of the compared samplers (not the reference): 'released' or "
                        "SIGMA_MAX:SIGMA_MIN:RHO")
    p.add_argument("--no-ema", action="store_true", help="use the raw parameters instead of the EMA")
    p.add_argument("--out", default="", help="JSON file for the results (written atomically)")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tqdm import tqdm

    from genxd_jax.data import make_eval_scenes
    from genxd_jax.diffusion import denoised_from_v, num_model_evaluations, set_timesteps, solvers, with_karras_schedule
    from genxd_jax.pipeline import finalize_latents, guided, unet_input

    config = load_config(args.config, args.workdir)
    from genxd_jax.pipeline import pipeline_from_workdir

    pipe, _, step, which = pipeline_from_workdir(args.workdir, config, use_ema=not args.no_ema)
    scenes = make_eval_scenes(config.data, num_scenes=args.scenes, kinds=("3d", "4d"), seed=args.scene_seed)
    schedules = {name: with_karras_schedule(pipe.scheduler, None if name == "released" else name)
                 for name in args.schedules}
    runs = [(s, n, name) for name in schedules for s in args.samplers for n in args.steps]
    rows = {run: {"lat_rms": [], "psnr_ref": [], "psnr_gt": []} for run in runs}
    ref_gt = []
    steps_max = max(args.reference_steps, *args.steps)

    # One compiled program per sampler for every step count: the schedule is padded to steps_max + 1 levels
    # and the number of steps is a traced argument (genxd_jax.diffusion.solvers, num_steps).
    @functools.partial(jax.jit, static_argnames=("sampler",))
    def run_sampler(state, latents, sigmas, timesteps, n, cond, guidance, sampler):
        unet = nnx.merge(pipe._unet_graph, state)

        def denoiser(x, i):
            raw = unet(unet_input(x, sigmas[i], cond), timesteps[i], cond.added_time_ids, cond.indicator,
                       cond.motion)
            return denoised_from_v(guided(raw, guidance), x, sigmas[i])

        return finalize_latents(solvers.solve(sampler, denoiser, latents, sigmas, num_steps=n), cond)

    def padded_schedule(n, config):
        sched = set_timesteps(config, n)
        sig = np.zeros(steps_max + 1, np.float32)
        sig[: n + 1] = sched.sigmas
        ts = np.zeros(steps_max + 1, np.float32)
        ts[:n] = sched.timesteps
        return jnp.asarray(sig), jnp.asarray(ts), sched.init_noise_sigma

    started = time.time()
    bar = tqdm(total=len(scenes) * (len(runs) + 1), desc="sampling", unit="sample")
    for i, scene in enumerate(scenes):
        mask = np.asarray(scene["context_mask"], bool)
        idx = np.flatnonzero(mask)
        inputs = pipe.prepare(scene["images"][idx], idx, scene["c2w"], scene["intrinsics"],
                              num_inference_steps=1, guidance_scale=args.guidance,
                              indicator=int(scene["indicator"]), motion_strength=float(scene["motion_strength"]),
                              rng=jax.random.key(i))

        def sample(sampler, n, config, inputs=inputs):
            sig, ts, init = padded_schedule(n, config)
            x0 = inputs.latents * np.float32(init / inputs.schedule.init_noise_sigma)  # the same unit noise
            latents = np.asarray(run_sampler(pipe._unet_state, x0, sig, ts, jnp.int32(n),
                                             inputs.conditioning, jnp.float32(args.guidance), sampler=sampler))
            return latents, pipe.decode(latents)

        ref_lat, ref_frames = sample("euler", args.reference_steps, pipe.scheduler)
        bar.update()
        gt = np.asarray(scene["images"], np.float32)
        ref_gt.append(psnr(ref_frames[~mask], gt[~mask]))
        for sampler, n, name in runs:
            lat, frames = sample(sampler, n, schedules[name])
            r = rows[(sampler, n, name)]
            r["lat_rms"].append(float(np.sqrt(np.mean((lat[~mask] - ref_lat[~mask]) ** 2))))
            r["psnr_ref"].append(psnr(frames[~mask], ref_frames[~mask]))
            r["psnr_gt"].append(psnr(frames[~mask], gt[~mask]))
            bar.update()
    bar.close()
    table = []
    for sampler, n, name in runs:
        r = rows[(sampler, n, name)]
        c = schedules[name]
        table.append(dict(sampler=sampler, steps=n, evals=num_model_evaluations(sampler, n),
                          sigma_max=c.sigma_max, sigma_min=c.sigma_min, rho=c.rho,
                          lat_rms=float(np.mean(r["lat_rms"])), psnr_ref=float(np.mean(r["psnr_ref"])),
                          psnr_gt=float(np.mean(r["psnr_gt"]))))
    result = dict(workdir=args.workdir, checkpoint_step=step, parameters=which, scenes=len(scenes),
                  scene_seed=args.scene_seed,
                  reference_steps=args.reference_steps, reference_psnr_gt=float(np.mean(ref_gt)),
                  guidance=args.guidance,
                  seconds=time.time() - started, rows=table)
    print(f"| sampler | σ_max, σ_min, ρ | steps | guided evals | latent RMS to {args.reference_steps}-step Euler | "
          "PSNR to reference (dB) | PSNR to ground truth (dB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['sampler']} | {r['sigma_max']:g}, {r['sigma_min']:g}, {r['rho']:g} | {r['steps']} | "
              f"{r['evals']} | {r['lat_rms']:.4f} | {r['psnr_ref']:.2f} | {r['psnr_gt']:.2f} |")
    c = pipe.scheduler
    print(f"| euler (reference) | {c.sigma_max:g}, {c.sigma_min:g}, {c.rho:g} | {args.reference_steps} | "
          f"{args.reference_steps} | 0 | ∞ | {result['reference_psnr_gt']:.2f} |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.out)), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, args.out)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
