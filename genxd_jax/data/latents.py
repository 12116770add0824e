"""Pre-encoded latents: encode every frame once with the frozen autoencoder, train without the encoder.

At full size the frozen VAE encoder is about 19 % of a training step's FLOPs; it sees the same frames every
epoch. ``python data/prepare.py --encode-latents ...`` (:func:`write_latent_shards`) squares every frame of
every scene at the training resolution with the deterministic centre crop the pipeline uses
(:func:`genxd_jax.data.images.square_image`, mode "crop"), encodes it, and stores the posterior statistics
in ArrayRecord shards. ``config.data.latents = True`` with sources of format ``"latents"`` then trains from
them: :class:`LatentSceneSource` reads a scene, :func:`build_latent_example` picks frames and context views
exactly as :func:`genxd_jax.data.example.build_example` does (same random draws, so the same seed picks the
same frames), and the train step draws the latents from the stored statistics instead of running the encoder.

Record (one scene, an ``.npz`` byte string read back with ``allow_pickle=False``):

==================  ================  =====================================================================
key                 shape / dtype     meaning
==================  ================  =====================================================================
``latent_mean``     (N, h, w, 4) f32  encoder posterior mean of every frame, h = w = resolution / 8; the
                                      VAE scaling factor is *not* applied (the train step applies it)
``latent_logvar``   (N, h, w, 4) f32  posterior log-variance (pool8: a constant −30, a point mass)
``motion_frames``   (N, 64, 64, 3) u8 the squared frames at 64² (INTER_AREA), for the flow motion proxy of
                                      scenes without a motion label
``c2w``             (N, 4, 4) f64     OpenCV camera-to-world, as the scene
``intrinsics``      (N, 3, 3) f64     normalised intrinsics *after* the centre crop
``name`` etc.       scalars           ``indicator``, ``motion_strength`` (−1 unknown), ``closed_orbit``,
                                      ``scene_scale`` (0 unknown), ``resolution``
==================  ================  =====================================================================

A dataset folder holds ``latents-XXXXX-of-YYYYY.array_record`` shards and ``latents.json`` (resolution,
autoencoder path, latent shape, scene count), which the reader checks against ``config.data``.

Not supported with latents (the config validation says so): random padding (``data.pad_probability > 0`` or
``square_mode "pad"``), since the encoded frames are fixed centre crops.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterable

import cv2
import numpy as np

from genxd_jax.data.cameras import normalise_poses
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.images import load_frame, square_image
from genxd_jax.data.motion import flow_motion_proxy
from genxd_jax.data.sampling import choose_views
from genxd_jax.data.scene import INDICATOR_3D, Scene

log = logging.getLogger(__name__)

METADATA = "latents.json"
SHARD_PATTERN = "latents-{:05d}-of-{:05d}.array_record"
MOTION_SIZE = 64
LATENT_FACTOR = 8
RECORD_KEYS = ("latent_mean", "latent_logvar", "motion_frames", "c2w", "intrinsics", "name", "indicator",
               "motion_strength", "closed_orbit", "scene_scale", "resolution")


class LatentDataError(ValueError):
    """A latent dataset that cannot be used as configured; the message names the file and the field."""


@dataclasses.dataclass
class LatentScene:
    """One encoded scene (see the module table); N frames."""

    name: str
    latent_mean: np.ndarray
    latent_logvar: np.ndarray
    motion_frames: np.ndarray
    c2w: np.ndarray
    intrinsics: np.ndarray
    indicator: int
    motion_strength: float | None
    closed_orbit: bool
    scene_scale: float | None
    resolution: int

    def __len__(self) -> int:
        return int(self.latent_mean.shape[0])


# ----------------------------------------------------------------------------------------------------------
# encoding


class FrameEncoder:
    """The frozen autoencoder as a jitted function of uint8 frames: (N, S, S, 3) -> (mean, logvar), each
    (N, S/8, S/8, 4) float32, without the scaling factor, in chunks of ``batch_size`` frames.

    The input mapping is the train step's: uint8 / 255 (float32, as the batch collation does) then 2x − 1.
    """

    def __init__(self, autoencoder, *, batch_size: int = 16):
        import jax
        from flax import nnx

        self.autoencoder = autoencoder
        self.batch_size = int(batch_size)
        graphdef, state = nnx.split(autoencoder)

        @jax.jit
        def encode(state, images):
            x = images.astype(np.float32) * np.float32(1.0 / 255.0)
            mean, logvar = nnx.merge(graphdef, state).encode(x * 2.0 - 1.0)
            return mean.astype(np.float32), logvar.astype(np.float32)

        self._state, self._encode = state, encode

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"FrameEncoder expects (N, S, S, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        means, logvars = [], []
        for i in range(0, len(frames), self.batch_size):
            chunk = frames[i : i + self.batch_size]
            pad = self.batch_size - len(chunk)  # one compiled shape for every chunk
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.uint8)])
            mean, logvar = self._encode(self._state, chunk)
            means.append(np.asarray(mean)[: self.batch_size - pad])
            logvars.append(np.asarray(logvar)[: self.batch_size - pad])
        return np.concatenate(means), np.concatenate(logvars)


def square_frames(scene: Scene, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of ``scene`` centre-cropped and resized to ``resolution``² exactly as the training
    pipeline's "crop" mode: ((N, S, S, 3) uint8, (N, 3, 3) normalised intrinsics)."""
    images, intrinsics = [], []
    for frame, k in zip(scene.frames, scene.intrinsics, strict=True):
        square, k2 = square_image(load_frame(frame, min_size=resolution), k, resolution, "crop")
        images.append(square)
        intrinsics.append(k2)
    return np.stack(images), np.stack(intrinsics)


def motion_thumbnails(frames: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, 64, 64, 3) uint8 (INTER_AREA), what the flow motion proxy looks at."""
    return np.stack([cv2.resize(np.ascontiguousarray(f), (MOTION_SIZE, MOTION_SIZE), interpolation=cv2.INTER_AREA)
                     for f in frames])


def encode_scene(scene: Scene, encoder: FrameEncoder, resolution: int) -> bytes:
    """One scene -> its latent record (``.npz`` bytes; see the module table)."""
    frames, intrinsics = square_frames(scene, resolution)
    mean, logvar = encoder(frames)
    buf = io.BytesIO()
    np.savez(
        buf,
        latent_mean=mean,
        latent_logvar=logvar,
        motion_frames=motion_thumbnails(frames),
        c2w=np.asarray(scene.c2w, np.float64),
        intrinsics=np.asarray(intrinsics, np.float64),
        name=np.str_(scene.name),
        indicator=np.int32(scene.indicator),
        motion_strength=np.float32(-1.0 if scene.motion_strength is None else scene.motion_strength),
        closed_orbit=np.bool_(scene.closed_orbit),
        scene_scale=np.float32(scene.scene_scale or 0.0),
        resolution=np.int32(resolution),
    )
    return buf.getvalue()


def decode_record(data: bytes, *, where: str = "latent record") -> LatentScene:
    """Latent record bytes -> :class:`LatentScene` (no pickle); ``where`` names the record in errors."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = [k for k in RECORD_KEYS if k not in z.files]
            if missing:
                raise LatentDataError(f"{where}: missing fields {missing}")
            r = {k: z[k] for k in RECORD_KEYS}
    except (OSError, ValueError) as e:
        if isinstance(e, LatentDataError):
            raise
        raise LatentDataError(f"{where}: not a latent record ({e})") from e
    motion, scale = float(r["motion_strength"]), float(r["scene_scale"])
    return LatentScene(
        name=str(r["name"]),
        latent_mean=r["latent_mean"],
        latent_logvar=r["latent_logvar"],
        motion_frames=r["motion_frames"],
        c2w=r["c2w"],
        intrinsics=r["intrinsics"],
        indicator=int(r["indicator"]),
        motion_strength=None if motion < 0 else motion,
        closed_orbit=bool(r["closed_orbit"]),
        scene_scale=scale if scale > 0 else None,
        resolution=int(r["resolution"]),
    )


def write_latent_shards(scenes: Iterable[Scene], out_dir: str, encoder: FrameEncoder, *, resolution: int,
                        num_shards: int = 1, autoencoder_path: str = "", total: int | None = None,
                        progress: bool = True) -> dict:
    """Encodes ``scenes`` into ``out_dir`` (ArrayRecord shards + ``latents.json``); returns the metadata.

    Scenes go to the shards in contiguous blocks (scene i to shard ⌊i·num_shards/total⌋), so that the dataset's
    index order is the input order (the same scene indices as the source it was encoded from); more than one
    shard needs ``total``. Each shard is written to a temporary name and
    renamed when complete, and ``latents.json`` is written last, so a crashed run leaves no readable partial
    dataset. Bad scenes (:class:`BadSceneError`) are skipped and logged.
    """
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm import tqdm

    if resolution % LATENT_FACTOR:
        raise ValueError(f"resolution must be a multiple of {LATENT_FACTOR}, got {resolution}")
    if num_shards < 1 or (num_shards > 1 and not total):
        raise ValueError(f"num_shards must be >= 1, and more than one shard needs total; got {num_shards}, {total}")
    os.makedirs(out_dir, exist_ok=True)
    names = [SHARD_PATTERN.format(i, num_shards) for i in range(num_shards)]
    writers = [ArrayRecordWriter(os.path.join(out_dir, n + ".tmp"), "group_size:1") for n in names]
    count, skipped = 0, 0
    try:
        for seen, scene in enumerate(tqdm(scenes, total=total, desc="encoding latents", unit="scene",
                                          disable=not progress)):
            try:
                record = encode_scene(scene, encoder, resolution)
            except BadSceneError as err:
                skipped += 1
                log.warning("skipping %s: %s", getattr(scene, "name", "?"), err)
                continue
            writers[min(seen * num_shards // total, num_shards - 1) if num_shards > 1 else 0].write(record)
            count += 1
    finally:
        for w in writers:
            w.close()
    for n in names:
        os.replace(os.path.join(out_dir, n + ".tmp"), os.path.join(out_dir, n))
    meta = dict(num_scenes=count, skipped=skipped, resolution=int(resolution),
                latent_shape=[resolution // LATENT_FACTOR, resolution // LATENT_FACTOR, 4],
                autoencoder=str(autoencoder_path), shards=names, scaling_factor_applied=False)
    tmp = os.path.join(out_dir, METADATA + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, METADATA))
    log.info("encoded %d scenes (%d skipped) into %s", count, skipped, out_dir)
    return meta


# ----------------------------------------------------------------------------------------------------------
# reading


def read_metadata(path: str) -> dict:
    file = os.path.join(path, METADATA)
    if not os.path.isfile(file):
        raise LatentDataError(f"{file} not found: encode the dataset with data/prepare.py --encode-latents")
    with open(file) as f:
        return json.load(f)


class LatentSceneSource:
    """Random access to the scenes of a latent dataset folder (picklable: opens its shards lazily).

    ``resolution``, when given, must equal the dataset's (the field ``config.data.resolution`` is named in the
    error); ``autoencoder``, when given, must equal the path recorded at encoding time.
    """

    def __init__(self, path: str, *, resolution: int | None = None, autoencoder: str | None = None):
        self.path = str(path)
        self.meta = read_metadata(self.path)
        if resolution is not None and int(self.meta["resolution"]) != int(resolution):
            raise LatentDataError(
                f"{os.path.join(self.path, METADATA)}: latents were encoded at resolution {self.meta['resolution']}"
                f" but config.data.resolution is {resolution}; re-encode or change the config")
        if autoencoder is not None and self.meta.get("autoencoder") and self.meta["autoencoder"] != autoencoder:
            raise LatentDataError(
                f"{os.path.join(self.path, METADATA)}: latents come from the autoencoder "
                f"{self.meta['autoencoder']!r} but config.vae.path is {autoencoder!r}")
        self.files = [os.path.join(self.path, n) for n in self.meta["shards"]]
        for f in self.files:
            if not os.path.isfile(f):
                raise LatentDataError(f"latent shard {f} listed in {METADATA} is missing")
        self._source = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def _records(self):
        if self._source is None:
            import grain

            self._source = grain.sources.ArrayRecordDataSource(self.files)
        return self._source

    def __len__(self) -> int:
        return int(self.meta["num_scenes"])

    def get(self, index: int) -> LatentScene:
        """The ``index``-th scene in shard order (shard 0's records, then shard 1's, ...)."""
        return decode_record(self._records()[int(index)], where=f"{self.path} record {index}")


def build_latent_example(
    scene: LatentScene,
    rng: np.random.Generator,
    *,
    num_frames: int,
    resolution: int,
    indicator: int,
    view_sampling: str = "orbit",
    frame_stride: int = 1,
    orbit_max_stride: int = 8,
    single_view_ratio: float = 0.5,
    max_context_views: int = 3,
    square_mode: str = "crop",
    pad_probability: float = 0.0,
    indices: np.ndarray | None = None,
    context_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The latent counterpart of :func:`genxd_jax.data.example.build_example`: the same random draws in the
    same order (both call :func:`genxd_jax.data.sampling.choose_views`, so one seed picks the same frames and
    context views), with ``latent_mean`` and
    ``latent_logvar`` (F, S/8, S/8, 4) float32 in place of ``images``."""
    if square_mode != "crop" or pad_probability > 0:
        raise LatentDataError("latents are encoded from centre crops: config.data.square_mode must be 'crop' and "
                              "config.data.pad_probability 0")
    if scene.resolution != resolution:
        raise LatentDataError(f"scene {scene.name} was encoded at {scene.resolution}, config.data.resolution is "
                              f"{resolution}")
    idx, mask = choose_views(rng, len(scene), closed_orbit=scene.closed_orbit, num_frames=num_frames,
                             indicator=indicator, view_sampling=view_sampling, frame_stride=frame_stride,
                             orbit_max_stride=orbit_max_stride, single_view_ratio=single_view_ratio,
                             max_context_views=max_context_views, indices=indices, context_mask=context_mask)
    ref = int(np.argmax(mask))
    c2w, _ = normalise_poses(scene.c2w[idx], ref, scene.scene_scale)
    if indicator == INDICATOR_3D:
        motion = 0.0
    elif scene.motion_strength is not None:
        motion = scene.motion_strength
    else:
        motion = flow_motion_proxy(scene.motion_frames[idx])
    return {
        "latent_mean": np.asarray(scene.latent_mean[idx], np.float32),
        "latent_logvar": np.asarray(scene.latent_logvar[idx], np.float32),
        "c2w": c2w.astype(np.float32),
        "intrinsics": np.asarray(scene.intrinsics[idx], np.float32),
        "indicator": np.int32(indicator),
        "motion_strength": np.float32(motion),
        "context_mask": mask,
    }
