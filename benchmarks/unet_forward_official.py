"""The official GenXD PyTorch UNet's forward, timed like `benchmarks/unet_forward.py` for a side-by-side run.

Same configuration (the released `unet_config.json`), same input (one 12-frame sample at latent 32², indicator 2,
motion 0.5, the same standard-normal draw in PyTorch's channels-first layout), random weights, float32, no
gradients, torch intra-op threads = the CPU count. Run it in its own environment, one after the other with our
benchmark on the same idle machine:

    python -m venv /tmp/offenv && /tmp/offenv/bin/pip install torch diffusers==0.30.3 "huggingface_hub<0.26" einops
    git clone https://github.com/HeliosZhao/GenXD /tmp/GenXD      # the official code; nothing of it is copied here
    /tmp/offenv/bin/python benchmarks/unet_forward_official.py --official-repo /tmp/GenXD --repeats 3
    python benchmarks/unet_forward.py --repeats 3

The official `models/unet_4d.py` imports `ipdb` at module level; install it too or the import fails.
Prints the wall and CPU time of every forward; the first is a warm-up and is left out of the minimum.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time

import numpy as np

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "shared/fixtures/official-config/unet_config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-repo", required=True, help="a checkout of github.com/HeliosZhao/GenXD")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: os.cpu_count())")
    parser.add_argument("--json", default="", help="also write the numbers here")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(pathlib.Path(args.official_repo).resolve()))
    from models.unet_4d import UNetMVTemporalConditionModel  # the official module

    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads or os.cpu_count())
    config = {k: v for k, v in json.loads(pathlib.Path(args.config).read_text()).items() if not k.startswith("_")}
    start = time.perf_counter()
    unet = UNetMVTemporalConditionModel(**config).eval()
    build_s = time.perf_counter() - start

    b, f, s = 1, args.frames, args.latent
    rng = np.random.default_rng(0)  # the draw benchmarks/unet_forward.py makes, (b, f, s, s, 15) → (b, f, 15, s, s)
    sample = torch.from_numpy(np.ascontiguousarray(rng.standard_normal((b, f, s, s, 15)).astype(np.float32)
                                                   .transpose(0, 1, 4, 2, 3)))
    timestep = torch.full((b,), 0.25 * np.log(3.7))
    ids = torch.zeros(b, f, 2)
    ids[..., 1] = 1.0
    indicator = torch.full((b,), 2, dtype=torch.long)
    motion = torch.full((b,), 0.5)
    context = torch.zeros(b, 1, 1)  # cross_attention_dim is null: the argument is required but unused

    times, cpu = [], []
    for _ in range(args.repeats + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        unet(sample, timestep, context, ids, indicator, motion_ids=motion)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    steady = min(times[1:])
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"official torch {torch.__version__} threads={torch.get_num_threads()} frames={f} latent={s}x{s}")
    print(f"build_s={build_s:.1f} warmup_s={times[0]:.2f} steady_s={steady:.2f} "
          f"all={[round(t, 2) for t in times[1:]]} cpu_s={[round(t, 1) for t in cpu[1:]]} "
          f"peak_host_mem={peak_gib:.1f} GiB")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(
            impl="official torch", torch=torch.__version__, threads=torch.get_num_threads(), frames=f, latent=s,
            steady_min_s=steady, warmup_s=times[0], all_s=times[1:], cpu_s=cpu[1:], peak_host_mem_gib=peak_gib),
            indent=2))


if __name__ == "__main__":
    main()
