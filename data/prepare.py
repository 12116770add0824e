"""Pack a raw dataset (published layout) into TFDS ArrayRecord shards for training.

Usage::

    python data/prepare.py --dataset camvid30k --manual_dir /raw/CamVid-30K --data_dir /data/tfds \
        [--short_side 256]

Shows a progress bar per split (scenes packed, scenes skipped), logs every skipped scene with its reason, and
prints the folder to put in ``config.data.sources`` (format "tfds").
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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


def prepare(dataset: str, manual_dir: str, data_dir: str, *, short_side: int = 256) -> str:
    """Builds the dataset and returns the prepared folder (``<data_dir>/<dataset>/<version>``)."""
    import tensorflow_datasets as tfds

    builder_cls = load_builder_class(dataset)
    builder_cls.SHORT_SIDE = short_side
    builder = builder_cls(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return os.fspath(builder.data_dir)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--manual_dir", required=True, help="raw dataset root in its published layout")
    parser.add_argument("--data_dir", required=True, help="TFDS data dir to write ArrayRecord shards to")
    parser.add_argument("--short_side", type=int, default=256, help="re-encode frames with this shorter side")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = prepare(args.dataset, args.manual_dir, args.data_dir, short_side=args.short_side)
    print(f"prepared {args.dataset} at {out}\nuse it with: source_config({args.dataset!r}, 'tfds', {out!r})")


if __name__ == "__main__":
    main()
