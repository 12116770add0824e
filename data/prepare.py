"""Pack a raw dataset (published layout) into TFDS ArrayRecord shards for training.

Usage::

    python data/prepare.py --dataset camvid30k --manual_dir /raw/CamVid-30K --data_dir /data/tfds \
        [--short_side 256]

Shows a progress bar per split (scenes packed, scenes skipped), logs every skipped scene with its reason, and
prints the folder to put in ``config.data.sources`` (format "tfds").

Clips curated by ``python -m genxd_jax.curate`` pack the same way (``--dataset camvid30k --manual_dir OUT_DIR``):
clips whose ``meta.json`` says ``"status": "rejected"`` are left out (through a folder of symlinks to the kept
clips, ``<data_dir>/camvid30k_kept_clips``), and the others carry their ``motion_strength``.

Pre-encoded latents (train without running the frozen encoder, ``config.data.latents = True``; see
``genxd_jax/data/latents.py``): encode every frame of a prepared dataset (or any ``read_scene`` layout, or
procedural scenes) once, centre-cropped at the training resolution::

    python data/prepare.py --encode-latents --source tfds:/data/tfds/camvid30k/1.0.0 \
        --vae checkpoints/genxd/vae --resolution 256 --out /data/latents/camvid30k [--shards 16]

``--source`` is ``FORMAT:PATH`` (FORMAT one of the ``config.data.sources`` formats; for ``synthetic`` PATH is
the kind, with ``--num-scenes``); ``--vae`` a released VAE folder or ``pool8``. Prints the source entry to use.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import sys

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
DATASETS = sorted(
    d for d in os.listdir(DATA_DIR) if os.path.isfile(os.path.join(DATA_DIR, d, f"{d}_dataset_builder.py"))
)


def load_builder_class(dataset: str):
    """Imports ``data/<dataset>/<dataset>_dataset_builder.py`` and returns its ``Builder``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; available: {DATASETS}")
    if DATA_DIR not in sys.path:
        sys.path.insert(0, DATA_DIR)
    return importlib.import_module(f"{dataset}.{dataset}_dataset_builder").Builder


def _status(clip_dir: str) -> str | None:
    path = os.path.join(clip_dir, "meta.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f).get("status")
    except (OSError, ValueError):
        return None


def stage_kept_clips(manual_dir: str, staging_dir: str) -> tuple[str, int, int]:
    """For a folder of curated clips (``genxd_jax.curate`` output): a folder of symlinks to the clips not
    marked rejected → (folder to pack, kept, rejected). A folder with no rejected clip is returned unchanged."""
    clips = sorted(d for d in os.listdir(manual_dir) if os.path.isdir(os.path.join(manual_dir, d)))
    rejected = [d for d in clips if _status(os.path.join(manual_dir, d)) == "rejected"]
    if not rejected:
        return manual_dir, len(clips), 0
    shutil.rmtree(staging_dir, ignore_errors=True)
    os.makedirs(staging_dir)
    kept = [d for d in clips if d not in rejected]
    for d in kept:
        os.symlink(os.path.abspath(os.path.join(manual_dir, d)), os.path.join(staging_dir, d))
    return staging_dir, len(kept), len(rejected)


def prepare(dataset: str, manual_dir: str, data_dir: str, *, short_side: int = 256) -> str:
    """Builds the dataset and returns the prepared folder (``<data_dir>/<dataset>/<version>``)."""
    import tensorflow_datasets as tfds

    if dataset == "camvid30k":
        manual_dir, kept, rejected = stage_kept_clips(manual_dir, os.path.join(data_dir, "camvid30k_kept_clips"))
        if rejected:
            logging.info("curated clips: packing %d kept, leaving out %d rejected (meta.json status)", kept, rejected)

    builder_cls = load_builder_class(dataset)
    builder_cls.SHORT_SIDE = short_side
    builder = builder_cls(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return os.fspath(builder.data_dir)


def encode_latents(source: str, vae: str, resolution: int, out: str, *, shards: int = 1, num_scenes: int = 0,
                   batch_size: int = 16, scaling_factor: float = 0.18215) -> dict:
    """Encodes every scene of ``source`` ("FORMAT:PATH") with the frozen autoencoder ``vae`` (a released VAE
    folder or "pool8") into latent ArrayRecord shards under ``out``; returns the written metadata."""
    import ml_collections

    from genxd_jax.data.config import SOURCE_FORMATS, default_data_config, source_config
    from genxd_jax.data.latents import FrameEncoder, write_latent_shards
    from genxd_jax.data.pipeline import make_source
    from genxd_jax.train_step import make_autoencoder

    fmt, sep, path = source.partition(":")
    if not sep or fmt not in SOURCE_FORMATS or fmt == "latents":
        formats = [f for f in SOURCE_FORMATS if f != "latents"]
        raise SystemExit(f"--source must be FORMAT:PATH with FORMAT one of {formats}, got {source!r}")
    data = default_data_config()
    data.resolution = int(resolution)
    overrides = {"num_scenes": int(num_scenes)} if num_scenes else {}
    src = make_source(source_config(fmt, fmt, path, **overrides), data)
    ae_config = ml_collections.ConfigDict({"vae": {"path": vae, "scaling_factor": scaling_factor}})
    encoder = FrameEncoder(make_autoencoder(ae_config), batch_size=batch_size)
    scenes = (src.get(i) for i in range(len(src)))
    return write_latent_shards(scenes, out, encoder, resolution=int(resolution), num_shards=shards,
                               autoencoder_path=vae, total=len(src))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument("--manual_dir", help="raw dataset root in its published layout")
    parser.add_argument("--data_dir", help="TFDS data dir to write ArrayRecord shards to")
    parser.add_argument("--short_side", type=int, default=256, help="re-encode frames with this shorter side")
    latents = parser.add_argument_group("pre-encoded latents (--encode-latents)")
    latents.add_argument("--encode-latents", action="store_true", help="encode frames with the frozen VAE")
    latents.add_argument("--source", help="FORMAT:PATH of the scenes to encode, e.g. tfds:/data/tfds/co3d/1.0.0")
    latents.add_argument("--vae", help="released VAE folder (config.vae.path) or pool8")
    latents.add_argument("--resolution", type=int, default=256, help="training resolution (config.data.resolution)")
    latents.add_argument("--out", help="output folder of the latent shards")
    latents.add_argument("--shards", type=int, default=1)
    latents.add_argument("--num-scenes", type=int, default=0, help="synthetic sources: number of scenes")
    latents.add_argument("--batch-size", type=int, default=16, help="frames per encoder call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.encode_latents:
        if not (args.source and args.vae and args.out):
            parser.error("--encode-latents needs --source, --vae and --out")
        meta = encode_latents(args.source, args.vae, args.resolution, args.out, shards=args.shards,
                              num_scenes=args.num_scenes, batch_size=args.batch_size)
        print(f"encoded {meta['num_scenes']} scenes ({meta['skipped']} skipped) into {args.out}\n"
              f"use it with: source_config(NAME, 'latents', {args.out!r}) and config.data.latents=True")
        return
    if not (args.dataset and args.manual_dir and args.data_dir):
        parser.error("--dataset, --manual_dir and --data_dir are required (or use --encode-latents)")
    out = prepare(args.dataset, args.manual_dir, args.data_dir, short_side=args.short_side)
    print(f"prepared {args.dataset} at {out}\nuse it with: source_config({args.dataset!r}, 'tfds', {out!r})")


if __name__ == "__main__":
    main()
