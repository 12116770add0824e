"""Packing scenes into TFDS / ArrayRecord records and reading them back as :class:`Scene` objects.

A record is one whole scene: its frames re-encoded as JPEG bytes (shorter side at most ``short_side`` pixels,
256 by default as CamVid-30K was processed, paper issue #1), its OpenCV c2w and normalised intrinsics
(unchanged by the uniform resize), the indicator and the motion label (−1 when unknown). The training pipeline
decodes only the F sampled frames of a record. The builders under ``data/`` subclass :class:`SceneBuilder`.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
from PIL import Image

from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.images import load_frame
from genxd_jax.data.scene import Scene

log = logging.getLogger(__name__)


def scene_features():
    """The TFDS FeaturesDict of a packed scene (imported lazily: TFDS is only needed when packing/reading)."""
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict(
        {
            "name": tfds.features.Text(),
            "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            "c2w": tfds.features.Tensor(shape=(None, 4, 4), dtype=np.float64),
            "intrinsics": tfds.features.Tensor(shape=(None, 3, 3), dtype=np.float64),
            "indicator": tfds.features.Scalar(dtype=np.int32),
            "motion_strength": tfds.features.Scalar(dtype=np.float32),
            "closed_orbit": tfds.features.Scalar(dtype=np.bool_),
            "scene_scale": tfds.features.Scalar(dtype=np.float32),
        }
    )


def encode_jpeg(image: np.ndarray, *, short_side: int | None = 256, quality: int = 95) -> bytes:
    """(H, W, 3) uint8 → JPEG bytes, downscaled (never upscaled) so that the shorter side ≤ ``short_side``."""
    img = Image.fromarray(image)
    if short_side and min(img.size) > short_side:
        scale = short_side / min(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def scene_to_example(scene: Scene, *, short_side: int | None = 256, quality: int = 95) -> dict:
    """Decodes every frame of ``scene`` (raising BadSceneError for a bad one) and builds a TFDS example."""
    return {
        "name": scene.name,
        "frames": [encode_jpeg(load_frame(f), short_side=short_side, quality=quality) for f in scene.frames],
        "c2w": np.asarray(scene.c2w, dtype=np.float64),
        "intrinsics": np.asarray(scene.intrinsics, dtype=np.float64),
        "indicator": np.int32(scene.indicator),
        "motion_strength": np.float32(-1.0 if scene.motion_strength is None else scene.motion_strength),
        "closed_orbit": bool(scene.closed_orbit),
        "scene_scale": np.float32(scene.scene_scale or 0.0),
    }


def example_to_scene(record: dict) -> Scene:
    """A record read back through ``tfds.data_source`` → Scene whose frames are JPEG bytes."""
    name = record["name"]
    motion = float(record["motion_strength"])
    scale = float(record["scene_scale"])
    return Scene(
        name=name.decode() if isinstance(name, bytes) else str(name),
        c2w=np.asarray(record["c2w"], dtype=np.float64),
        intrinsics=np.asarray(record["intrinsics"], dtype=np.float64),
        frames=list(record["frames"]),
        indicator=int(record["indicator"]),
        motion_strength=None if motion < 0 else motion,
        closed_orbit=bool(record["closed_orbit"]),
        scene_scale=scale if scale > 0 else None,
    )


def iter_packed_examples(
    fmt: str, paths: list[str], *, short_side: int | None = 256, progress: bool = True
) -> Iterator[tuple[str, dict]]:
    """(key, example) for every good scene of ``paths``; bad scenes are skipped, counted and logged."""
    from tqdm import tqdm

    from genxd_jax.data.readers import read_scene

    skipped: Counter[str] = Counter()
    bar = tqdm(paths, desc=f"packing {fmt}", unit="scene", disable=not progress)
    for path in bar:
        try:
            example = scene_to_example(read_scene(fmt, path), short_side=short_side)
        except BadSceneError as err:
            skipped[err.reason] += 1
            log.warning("skipping %s: %s", path, err)
            bar.set_postfix(skipped=sum(skipped.values()))
            continue
        yield (
            os.path.relpath(path, os.path.commonpath(paths)) if len(paths) > 1 else os.path.basename(path),
            example,
        )
    log.info(
        "packed %d/%d %s scenes; skipped: %s",
        len(paths) - sum(skipped.values()),
        len(paths),
        fmt,
        dict(skipped) or "none",
    )


@functools.cache
def make_scene_builder_class():
    """Returns the TFDS ``SceneBuilder`` base class (defined lazily: importing this module needs no TFDS)."""
    import tensorflow_datasets as tfds
    from etils import epath

    class SceneBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Base of the data/<name>/ builders: packs ``read_scene(FORMAT, path)`` for every discovered scene.

        Subclasses set ``FORMAT``. Raw data goes in the manual dir (``--manual_dir``) in its published layout.
        """

        FORMAT = ""
        SHORT_SIDE = 256
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Initial release."}

        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):  # TFDS 4.9.10 otherwise needs the `importlib_resources` backport to find it.
            import inspect

            return epath.Path(inspect.getfile(cls))

        def _info(self):
            return self.dataset_info_from_configs(features=scene_features(), supervised_keys=None)

        def _split_generators(self, dl_manager):
            from genxd_jax.data.readers import discover_scenes

            root = os.fspath(dl_manager.manual_dir)
            paths = discover_scenes(self.FORMAT, root)
            if not paths:
                raise FileNotFoundError(f"no {self.FORMAT} scenes found under the manual dir {root}")
            return {"train": self._generate_examples(paths)}

        def _generate_examples(self, paths):
            yield from iter_packed_examples(self.FORMAT, paths, short_side=self.SHORT_SIDE)

    return SceneBuilder
