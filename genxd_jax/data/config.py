"""The data section of the experiment config: :func:`default_data_config`, embedded as ``config.data``."""

from __future__ import annotations

import ml_collections

# Source formats accepted in ``config.sources[i].format``: every read_scene format plus "tfds" (packed
# ArrayRecord scenes written by the builders under data/).
SOURCE_FORMATS = (
    "synthetic",
    "camvid30k",
    "mvimgnet",
    "co3d",
    "re10k",
    "acid",
    "objaverse",
    "objaverse_anim",
    "tfds",
    "latents",
)


def source_config(
    name: str, format: str, path: str = "", weight: float = 1.0, **overrides
) -> ml_collections.ConfigDict:  # noqa: A002
    """One entry of ``config.sources``.

    Fields:
        name: dataset name; its position in ``config.sources`` is the example's ``dataset_id``.
        format: one of :data:`SOURCE_FORMATS`.
        path: dataset root in its published layout (``read_scene`` formats), the prepared TFDS dataset folder
            (``<data_dir>/<name>/<version>``, format "tfds"), the folder written by ``data/prepare.py
            --encode-latents`` (format "latents", with ``config.data.latents``), or for "synthetic" the kind:
            "3d" or "4d".
        weight: mixture weight (normalised over sources by grain's ``mix``).
        indicator: −1 keeps the format's own (0 = 3D, 1 = video, 2 = 4D); 0/1/2 overrides it.
        view_sampling: 3D scenes only: "orbit" (ordered views with a random stride, wrapping on closed orbits)
        or
            "random" (a random subset in capture order).
        split: TFDS split (format "tfds").
        num_scenes: number of distinct procedural scenes (format "synthetic").
        scene_seed: seed of the procedural scene family (format "synthetic"); eval scenes use another family.
        num_source_frames: frames per procedural scene (0 = the kind's default: 24 for 3D, 32 for 4D).
    """
    cfg = ml_collections.ConfigDict(
        dict(
            name=name,
            format=format,
            path=path,
            weight=float(weight),
            indicator=-1,
            view_sampling="orbit",
            split="train",
            num_scenes=10_000,
            scene_seed=0,
            num_source_frames=0,
        )
    )
    cfg.update(overrides)
    return cfg


def default_data_config() -> ml_collections.ConfigDict:
    """The default data config: a 50/50 mixture of procedural 3D and 4D scenes (no download needed).

    Fields:
        num_frames: F, frames per example (GenXD uses 12).
        resolution: square output side in pixels (paper: 256).
        batch_size: examples per batch **per JAX process** (global batch / process count).
        sources: tuple of :func:`source_config` entries (name, format, path, weight, indicator, ...).
        single_view_ratio: probability that an example has exactly one context view (GenXD config: 0.5).
        max_context_views: K, the most context views of a multi-view example (2..K drawn uniformly, always
            leaving at least one target frame).
        frame_stride: largest temporal stride for video/4D examples; each example draws a stride in
            [1, frame_stride], lowered when the scene is too short.
        orbit_max_stride: largest view stride for "orbit" sampling of open (non-closed) 3D trajectories.
        square_mode: "crop" (centre crop, stages 1–2) or "pad" (zero padding).
        pad_probability: with square_mode "crop", the probability of padding instead (stage 3 mixes both).
        worker_count: grain worker processes (0 = decode in the main process with ``read_threads`` threads).
        worker_buffer_size: examples buffered per worker.
        read_threads / prefetch_buffer_size: grain ReadOptions of the in-process stage.
        max_bad_fraction: the run stops (DataQualityError) when more than this fraction of examples was
        skipped
            as bad input, once ``bad_fraction_min_examples`` examples have been seen.
        scene_cache_size: parsed scenes (cameras, not pixels) cached per process/worker.
        shuffle: shuffle scenes each epoch (deterministically from the seed).
        seed: default pipeline seed (``make_train_dataset(config, seed=config.seed)``).
        latents: train on latents encoded ahead of time (:mod:`genxd_jax.data.latents`): every source must
            have format "latents"; batches carry ``latent_mean``/``latent_logvar`` instead of ``images`` and
            the train step skips the encoder. Needs square_mode "crop" and pad_probability 0.
    """
    cfg = ml_collections.ConfigDict()
    cfg.num_frames = 8
    cfg.resolution = 64
    cfg.batch_size = 4
    cfg.sources = (
        source_config("synthetic_3d", "synthetic", "3d", 0.5),
        source_config("synthetic_4d", "synthetic", "4d", 0.5),
    )
    cfg.single_view_ratio = 0.5
    cfg.max_context_views = 3
    cfg.frame_stride = 2
    cfg.orbit_max_stride = 8
    cfg.square_mode = "crop"
    cfg.pad_probability = 0.0
    cfg.worker_count = 0
    cfg.worker_buffer_size = 2
    cfg.read_threads = 2
    cfg.prefetch_buffer_size = 8
    cfg.max_bad_fraction = 0.05
    cfg.bad_fraction_min_examples = 50
    cfg.scene_cache_size = 64
    cfg.shuffle = True
    cfg.seed = 0
    cfg.latents = False
    return cfg


def dataset_names(config: ml_collections.ConfigDict) -> list[str]:
    """The ``dataset_id`` → name table: ``dataset_names(config)[batch["dataset_id"][b]]``."""
    return [str(src.name) for src in config.sources]
