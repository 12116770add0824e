"""The grain training pipeline: sources → shuffled, repeated examples → weighted mixture → this process's rows
of the global batch → (worker processes) → bad-input gate + batching.

Per source ``s`` (``config.sources[s]``)::

    MapDataset.range(len(source))
      .seed(seed + s).shuffle().repeat()                              # deterministic epochs
      .random_map(ExampleSampler(...), seed=...)                      # frames, context, decode, normalise

then ``MapDataset.mix(per_source, weights)`` (exact interleaving by weight) is the *global* example stream,
the same for any number of processes. Process ``p`` of ``P`` with ``batch_size = b`` reads, lazily (random
access: only its own rows are decoded), global examples ``k·P·b + p·b + r`` for its k-th batch, r < b, so the
rows of all processes' k-th batches, concatenated in process order, are exactly the k-th batch of a single
process with batch size ``P·b`` (as long as no example is dropped as bad input). Then
``to_iter_dataset(ReadOptions)``,
optionally ``mp_prefetch(MultiprocessingOptions(worker_count))``, and :class:`BatchAndGateIterDataset`, which
drops bad examples (counting each reason), raises :class:`DataQualityError` past ``max_bad_fraction``, and
stacks ``batch_size`` good examples. Every stage is a grain iterator, so ``it.get_state()`` /
``it.set_state()`` (or
``grain.checkpoint.CheckpointSave/Restore`` inside the Orbax checkpoint) restore the exact stream, counters
included.
"""

from __future__ import annotations

import logging
from collections import Counter

import grain
import numpy as np

from genxd_jax.data.errors import REASONS, DataQualityError
from genxd_jax.data.example import BAD_KEY, ExampleSampler, build_example
from genxd_jax.data.sources import DiskSceneSource, PackedSceneSource, SyntheticSceneSource
from genxd_jax.data.synthetic import make_synthetic_scene, synthetic_to_scene

log = logging.getLogger(__name__)

EVAL_SCENE_SEED_OFFSET = 1_000_003  # eval scenes come from a procedural family never used for training
_LOG_FIRST = 10  # log the first N skips of each reason, then every 100th


def make_source(src_cfg, config):
    """The random-access scene source of one ``config.sources`` entry."""
    fmt = str(src_cfg.format)
    if fmt == "synthetic":
        return SyntheticSceneSource(
            str(src_cfg.path or "3d"),
            num_scenes=int(src_cfg.num_scenes),
            scene_seed=int(src_cfg.scene_seed),
            size=int(config.resolution),
            num_frames=int(src_cfg.num_source_frames),
            cache_size=int(config.scene_cache_size),
        )
    if not src_cfg.path:
        raise ValueError(f"data source {src_cfg.name!r} ({fmt}) needs a path")
    if fmt == "tfds":
        return PackedSceneSource(str(src_cfg.path), split=str(src_cfg.split))
    if fmt == "latents":
        from genxd_jax.data.latents import LatentSceneSource

        return LatentSceneSource(str(src_cfg.path), resolution=int(config.resolution))
    return DiskSceneSource(fmt, str(src_cfg.path), cache_size=int(config.scene_cache_size))


class ProcessRows:
    """Maps a process-local example index to its global example: ``(j // b)·P·b + p·b + j % b`` (picklable)."""

    def __init__(self, stream, batch_size: int, process_index: int, process_count: int):
        self.stream, self.b, self.p, self.n = stream, batch_size, process_index, process_count

    def __call__(self, j: int):
        k, r = divmod(int(j), self.b)
        return self.stream[k * self.n * self.b + self.p * self.b + r]


def _collate(examples: list[dict]) -> dict[str, np.ndarray]:
    batch = {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}
    if "images" in batch:  # latent batches (config.latents) carry float32 latent statistics instead
        batch["images"] = batch["images"].astype(np.float32) * np.float32(1.0 / 255.0)
    return batch


class _BatchAndGateIterator(grain.DatasetIterator):
    def __init__(self, parent, batch_size: int, max_bad_fraction: float, min_examples: int):
        super().__init__(parent)
        self._batch_size = int(batch_size)
        self._max_bad = float(max_bad_fraction)
        self._min_examples = int(min_examples)
        self._seen = 0
        self._bad: Counter[str] = Counter()

    def _record_bad(self, example: dict) -> None:
        reason = example[BAD_KEY]
        self._bad[reason] += 1
        count = self._bad[reason]
        if count <= _LOG_FIRST or count % 100 == 0:
            log.warning("skipped bad example #%d (%s): %s", count, reason, example.get("message", ""))
        bad = sum(self._bad.values())
        if self._seen >= self._min_examples and bad > self._max_bad * self._seen:
            raise DataQualityError(
                f"{bad} of {self._seen} examples ({bad / self._seen:.1%}) were bad input, above the bound "
                f"max_bad_fraction={self._max_bad:.1%}; reasons: {dict(self._bad)}. "
                "Fix or remove the bad scenes "
                "(see the warnings above) or raise config.data.max_bad_fraction."
            )

    def __next__(self) -> dict[str, np.ndarray]:
        examples = []
        while len(examples) < self._batch_size:
            example = next(self._parent)
            self._seen += 1
            if BAD_KEY in example:
                self._record_bad(example)
            else:
                examples.append(example)
        return _collate(examples)

    def metrics(self) -> dict[str, float]:
        """Bad-input counters: ``data/examples_seen``, ``data/examples_skipped``, ``data/bad_fraction`` and
        ``data/skipped/<reason>`` for every reason of :data:`genxd_jax.data.errors.REASONS`."""
        bad = sum(self._bad.values())
        out = {
            "data/examples_seen": float(self._seen),
            "data/examples_skipped": float(bad),
            "data/bad_fraction": bad / self._seen if self._seen else 0.0,
        }
        out.update({f"data/skipped/{reason}": float(self._bad.get(reason, 0)) for reason in REASONS})
        return out

    def get_state(self):
        return {"parent": self._parent.get_state(), "seen": self._seen, "bad": dict(self._bad)}

    def set_state(self, state):
        self._parent.set_state(state["parent"])
        self._seen = int(state["seen"])
        self._bad = Counter({k: int(v) for k, v in state["bad"].items()})

    def __str__(self) -> str:
        return f"BatchAndGateIterator(batch_size={self._batch_size}, max_bad_fraction={self._max_bad})"


class BatchAndGateIterDataset(grain.IterDataset):
    """Drops and counts bad examples, enforces the bad-fraction bound, batches good ones (see module doc)."""

    def __init__(
        self, parent: grain.IterDataset, *, batch_size: int, max_bad_fraction: float, min_examples: int
    ):
        super().__init__(parent)
        self._args = (batch_size, max_bad_fraction, min_examples)

    def __iter__(self) -> _BatchAndGateIterator:
        return _BatchAndGateIterator(self._parent.__iter__(), *self._args)


def _ensure_absl_flags_parsed() -> None:
    # grain's worker processes read absl flags; outside absl.app.run they are unparsed and grain fails.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_train_dataset(
    config, *, seed: int, process_index: int | None = None, process_count: int | None = None
) -> grain.IterDataset:
    """The training IterDataset of this JAX process (see the package docstring for the batch layout).

    Args:
        config: :func:`genxd_jax.data.default_data_config`-shaped ConfigDict (``config.data`` of the
        experiment).
        seed: pipeline seed (shuffling, frame/context choice). The same seed gives the same stream.
        process_index / process_count: this process's shard; default ``jax.process_index()/process_count()``.

    Returns:
        ``grain.IterDataset``; ``iter(ds)`` yields batches and supports ``get_state``/``set_state`` and
        ``metrics()`` (bad-input counters).
    """
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if not config.sources:
        raise ValueError("config.sources is empty")
    per_source, weights = [], []
    for sid, src_cfg in enumerate(config.sources):
        if float(src_cfg.weight) <= 0:
            continue
        source = make_source(src_cfg, config)
        ds = grain.MapDataset.range(len(source))
        if config.shuffle:
            ds = ds.seed(seed * 1_000_003 + sid).shuffle()
        ds = ds.repeat()
        sampler = ExampleSampler(
            source,
            dataset_id=sid,
            indicator=int(src_cfg.indicator),
            view_sampling=str(src_cfg.view_sampling),
            data_config=config,
        )
        ds = ds.random_map(sampler, seed=(seed * 1_000_003 + sid) * 65_537)
        per_source.append(ds)
        weights.append(float(src_cfg.weight))
    if not per_source:
        raise ValueError("every data source has weight 0")
    mixed = per_source[0] if len(per_source) == 1 else grain.MapDataset.mix(per_source, weights)
    if process_count > 1:
        rows = ProcessRows(mixed, int(config.batch_size), process_index, process_count)
        mixed = grain.MapDataset.range(len(mixed) // process_count).map(rows)
    ds = mixed.to_iter_dataset(
        grain.ReadOptions(
            num_threads=int(config.read_threads), prefetch_buffer_size=int(config.prefetch_buffer_size)
        )
    )
    if int(config.worker_count) > 0:
        _ensure_absl_flags_parsed()
        ds = ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=int(config.worker_count), per_worker_buffer_size=int(config.worker_buffer_size)
            )
        )
    return BatchAndGateIterDataset(
        ds,
        batch_size=int(config.batch_size),
        max_bad_fraction=float(config.max_bad_fraction),
        min_examples=int(config.bad_fraction_min_examples),
    )


def iterator_metrics(iterator) -> dict[str, float]:
    """Bad-input metrics of a training iterator (``iter(make_train_dataset(...))``)."""
    return iterator.metrics()


def make_eval_scenes(
    config, *, num_scenes: int = 4, kinds: tuple[str, ...] = ("3d", "4d"), seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Held-out procedural examples for evaluation, identical on every call and process.

    Scenes come from the procedural family ``seed + EVAL_SCENE_SEED_OFFSET``, which training never uses. For
    each kind, ``num_scenes`` scenes of exactly ``config.num_frames`` frames at ``config.resolution``, all
    frames in order (3D: evenly spaced around the full orbit; 4D: consecutive); the context is the single
    frame 0.

    Returns:
        list of example dicts (no batch axis): ``images`` (F, S, S, 3) float32 in [0, 1], ``c2w``,
        ``intrinsics``, ``indicator``, ``motion_strength``, ``context_mask``, ``dataset_id`` (−1) and
        ``scene_index``.
    """
    f, size = int(config.num_frames), int(config.resolution)
    out = []
    for kind in kinds:
        for index in range(num_scenes):
            params = make_synthetic_scene(kind, seed + EVAL_SCENE_SEED_OFFSET, index, size=size, num_frames=f)
            scene = synthetic_to_scene(params, name=f"eval/{kind}/{index}")
            example = build_example(
                scene,
                np.random.default_rng(0),
                num_frames=f,
                resolution=size,
                indicator=scene.indicator,
                indices=np.arange(f),
                context_mask=np.arange(f) == 0,
            )
            example["images"] = example["images"].astype(np.float32) / np.float32(255.0)
            example["dataset_id"] = np.int32(-1)
            example["scene_index"] = np.int32(index)
            out.append(example)
    return out
