"""Input-pipeline throughput: examples per second for 12 frames at 256×256 decoded from JPEG scenes.

Writes a small CamVid-30K-layout dataset (JPEG frames at 256×455, the released clips' shorter-side-256 size,
and COLMAP models) into a temporary folder, then times ``make_train_dataset`` with 0, 1 and 2 grain worker
processes. Also times the default procedural configuration (the tiny training config's data: 8 frames at
64 px). The clips have no motion metadata, so the optical-flow motion proxy runs on every example.

Usage::

    python benchmarks/data_throughput.py [--batches 20] [--workers 0 1 2] [--batch_size 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
from absl import flags

from genxd_jax.data import default_data_config, make_train_dataset, source_config
from genxd_jax.data.fixtures import random_cameras, write_colmap_model


def write_jpeg_dataset(
    root: str, *, clips: int = 6, frames: int = 36, height: int = 256, width: int = 455
) -> None:
    """CamVid-30K-layout clips with natural-looking (smooth + noise) JPEG frames."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(clips):
        clip = os.path.join(root, f"clip{c:03d}")
        os.makedirs(os.path.join(clip, "images"))
        base = np.asarray(
            Image.fromarray(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)).resize(
                (width, height), Image.BICUBIC
            )
        )
        names = []
        for f in range(frames):
            img = np.roll(base, 3 * f, axis=1).astype(np.int16) + rng.integers(-12, 12, base.shape)
            names.append(f"{f:05d}.jpg")
            frame = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
            frame.save(os.path.join(clip, "images", names[-1]), quality=90)
        c2w, k = random_cameras(rng, frames)
        write_colmap_model(os.path.join(clip, "0"), names, c2w, k, width, height)


def measure(cfg, *, batches: int, warmup: int = 3) -> float:
    """Examples per second of the pipeline after ``warmup`` batches (worker start-up excluded)."""
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as root:
        write_jpeg_dataset(root)
        for workers in args.workers:
            cfg = default_data_config()
            cfg.num_frames, cfg.resolution, cfg.batch_size = 12, 256, args.batch_size
            cfg.frame_stride, cfg.worker_count = 2, workers
            cfg.sources = (source_config("camvid30k", "camvid30k", root),)
            rate = measure(cfg, batches=args.batches)
            print(f"JPEG camvid30k, 12×256², workers={workers}: {rate:.1f} examples/s")
        for workers in args.workers:
            cfg = default_data_config()
            cfg.worker_count = workers
            rate = measure(cfg, batches=args.batches)
            print(f"synthetic default (8×64², 3D+4D), workers={workers}: {rate:.1f} examples/s")


if __name__ == "__main__":
    main()
