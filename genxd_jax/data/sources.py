"""Random-access scene sources: ``len(source)`` scenes, ``source.get(i) -> Scene`` (validated).

Sources are pickled into grain worker processes, so they hold only paths and parameters; parsed scenes are
cached per process in a small LRU (``scene_cache_size``), which is not pickled.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from genxd_jax.data.readers import discover_scenes, read_scene
from genxd_jax.data.scene import Scene, validate_scene
from genxd_jax.data.synthetic import make_synthetic_scene, synthetic_to_scene


class _CachedSource:
    def __init__(self, cache_size: int):
        self._cache_size = int(cache_size)
        self._cache: OrderedDict[int, Scene] = OrderedDict()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    def _load(self, index: int) -> Scene:
        raise NotImplementedError

    def get(self, index: int) -> Scene:
        index = int(index)
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        scene = self._load(index)
        if self._cache_size > 0:
            self._cache[index] = scene
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return scene


class DiskSceneSource(_CachedSource):
    """Scenes of a dataset root in its published layout (discovered once, sorted)."""

    def __init__(self, fmt: str, root: str, *, cache_size: int = 64):
        super().__init__(cache_size)
        self.fmt = fmt
        self.paths = discover_scenes(fmt, os.fspath(root))
        if not self.paths:
            raise FileNotFoundError(f"no {fmt} scenes under {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Scene:
        return read_scene(self.fmt, self.paths[index])


class SyntheticSceneSource(_CachedSource):
    """``num_scenes`` procedural scenes of one kind ("3d"/"4d"), rendered at ``size`` pixels."""

    def __init__(
        self,
        kind: str,
        *,
        num_scenes: int,
        scene_seed: int,
        size: int,
        num_frames: int = 0,
        cache_size: int = 64,
    ):
        super().__init__(cache_size)
        self.kind, self.num_scenes, self.scene_seed = kind, int(num_scenes), int(scene_seed)
        self.size, self.num_frames = int(size), int(num_frames) or None

    def __len__(self) -> int:
        return self.num_scenes

    def _load(self, index: int) -> Scene:
        params = make_synthetic_scene(
            self.kind, self.scene_seed, index, size=self.size, num_frames=self.num_frames
        )
        return synthetic_to_scene(params, name=f"synthetic/{self.kind}/{self.scene_seed}/{index}")


class PackedSceneSource(_CachedSource):
    """Scenes packed into ArrayRecord by a ``data/`` TFDS builder, read through ``tfds`` data sources.

    Args:
        dataset_dir: the prepared dataset folder ``<data_dir>/<name>/<version>`` (holds dataset_info.json).
        split: TFDS split name.
    """

    def __init__(self, dataset_dir: str, *, split: str = "train", cache_size: int = 0):
        super().__init__(cache_size)
        self.dataset_dir, self.split = os.fspath(dataset_dir), split
        self._source = None
        self._length = len(self._data_source())

    def __getstate__(self):
        state = super().__getstate__()
        state["_source"] = None
        return state

    def _data_source(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            if not os.path.isfile(os.path.join(self.dataset_dir, "dataset_info.json")):
                raise FileNotFoundError(
                    f"{self.dataset_dir} is not a prepared TFDS dataset (no dataset_info.json)"
                )
            self._source = tfds.builder_from_directory(self.dataset_dir).as_data_source(self.split)
        return self._source

    def __len__(self) -> int:
        return self._length

    def _load(self, index: int) -> Scene:
        from genxd_jax.data.packing import example_to_scene

        scene = example_to_scene(self._data_source()[index])
        validate_scene(scene)
        return scene
