"""Camera-annotated 3D and 4D scenes for GenXD: readers, sampling and the grain training pipeline.

Public API (signatures)::

    read_scene(fmt: str, path: str, **options) -> Scene
        fmt ∈ {"camvid30k", "mvimgnet", "co3d", "re10k", "acid", "objaverse", "objaverse_anim", "synthetic"}.
        scene.c2w (N, 4, 4) float64 OpenCV c2w; scene.intrinsics (N, 3, 3) normalised; scene.frames: N refs.
    discover_scenes(fmt: str, root: str) -> list[str]
    default_data_config() -> ml_collections.ConfigDict           # becomes config.data
    source_config(name, format, path="", weight=1.0, **overrides) -> ml_collections.ConfigDict
    dataset_names(config) -> list[str]                            # dataset_id → name
    make_train_dataset(config, *, seed: int, process_index: int | None = None,
                       process_count: int | None = None) -> grain.IterDataset
    make_eval_scenes(config, *, num_scenes=4, kinds=("3d", "4d"), seed=0) -> list[dict[str, np.ndarray]]
    iterator_metrics(iterator) -> dict[str, float]                # bad-input counters of iter(train dataset)

Batches of ``iter(make_train_dataset(config.data, seed=...))`` are dicts of numpy arrays, B =
config.batch_size
(per process), F = config.num_frames, S = config.resolution:

* ``images`` (B, F, S, S, 3) float32 in [0, 1];
* ``c2w`` (B, F, 4, 4) float32, OpenCV axes, relative to the first context frame (identity there) with the
  farthest camera at distance 1 (:mod:`genxd_jax.data.cameras` documents the choice);
* ``intrinsics`` (B, F, 3, 3) float32, normalised (fx/S, fy/S, cx/S, cy/S);
* ``indicator`` (B,) int32: 0 = 3D, 1 = video, 2 = 4D;
* ``motion_strength`` (B,) float32 (paper eq. 4 × 100, see :mod:`genxd_jax.data.motion`; 0 for 3D);
* ``context_mask`` (B, F) bool;
* ``dataset_id`` (B,) int32 (name table: ``dataset_names(config)``);
* ``scene_index`` (B,) int32 (scene within its source, for debugging).

The iterator's ``get_state()`` / ``set_state()`` restore the exact stream (use
``grain.checkpoint.CheckpointSave``
/ ``CheckpointRestore`` in the Orbax checkpoint) and ``metrics()`` reports skipped bad input.
"""

from genxd_jax.data.config import dataset_names, default_data_config, source_config
from genxd_jax.data.errors import REASONS, BadSceneError, DataQualityError
from genxd_jax.data.pipeline import iterator_metrics, make_eval_scenes, make_train_dataset
from genxd_jax.data.readers import discover_scenes, read_scene
from genxd_jax.data.scene import Scene

__all__ = [
    "REASONS",
    "BadSceneError",
    "DataQualityError",
    "Scene",
    "dataset_names",
    "default_data_config",
    "discover_scenes",
    "iterator_metrics",
    "make_eval_scenes",
    "make_train_dataset",
    "read_scene",
    "source_config",
]
