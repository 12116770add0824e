"""Turning a scene into one training example (runs inside grain, possibly in worker processes).

An example (before batching) is a dict of numpy arrays:

==================  =============  =========================================================================
key                 shape / dtype  meaning
==================  =============  =========================================================================
``images``          (F, S, S, 3)   uint8 (converted to float32 in [0, 1] when batched)
``c2w``             (F, 4, 4) f32  OpenCV c2w relative to the first context frame, scale-normalised
``intrinsics``      (F, 3, 3) f32  normalised by the output size S
``indicator``       () int32       0 = 3D, 1 = video, 2 = 4D
``motion_strength`` () float32     :mod:`genxd_jax.data.motion` units; 0 for 3D
``context_mask``    (F,) bool      True at the condition frames
``dataset_id``      () int32       index of the source in ``config.sources``
``scene_index``     () int32       index of the scene within its source (for debugging and tests)
==================  =============  =========================================================================

A scene that fails (:class:`~genxd_jax.data.errors.BadSceneError`) yields ``{"_bad": reason, ...}`` instead,
which the batching stage counts and drops; any other exception is a bug and propagates.
"""

from __future__ import annotations

import numpy as np

from genxd_jax.data.cameras import normalise_poses
from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.images import load_frame, square_image
from genxd_jax.data.motion import flow_motion_proxy
from genxd_jax.data.sampling import choose_views
from genxd_jax.data.scene import INDICATOR_3D, Scene

BAD_KEY = "_bad"


def build_example(
    scene: Scene,
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
    """Samples frames and context views of ``scene`` and decodes them (see module table; no batch axis).

    ``indices`` (F,) and ``context_mask`` (F,) bool, when given, replace the random choices (evaluation).
    """
    idx, mask = choose_views(rng, len(scene), closed_orbit=scene.closed_orbit, num_frames=num_frames,
                             indicator=indicator, view_sampling=view_sampling, frame_stride=frame_stride,
                             orbit_max_stride=orbit_max_stride, single_view_ratio=single_view_ratio,
                             max_context_views=max_context_views, indices=indices, context_mask=context_mask)
    mode = (
        "pad"
        if square_mode == "crop" and pad_probability > 0 and rng.random() < pad_probability
        else square_mode
    )
    images, intrinsics = [], []
    for i in idx:
        frame = load_frame(scene.frames[i], min_size=resolution)
        square, k = square_image(frame, scene.intrinsics[i], resolution, mode)
        images.append(square)
        intrinsics.append(k)
    images = np.stack(images)
    ref = int(np.argmax(mask))
    c2w, _ = normalise_poses(scene.c2w[idx], ref, scene.scene_scale)
    if indicator == INDICATOR_3D:
        motion = 0.0
    elif scene.motion_fn is not None:
        motion = scene.motion_fn(idx)
    elif scene.motion_strength is not None:
        motion = scene.motion_strength
    else:
        motion = flow_motion_proxy(images)
    return {
        "images": images,
        "c2w": c2w.astype(np.float32),
        "intrinsics": np.stack(intrinsics).astype(np.float32),
        "indicator": np.int32(indicator),
        "motion_strength": np.float32(motion),
        "context_mask": mask,
    }


class ExampleSampler:
    """grain random map: scene index → example (or a bad-input marker). Picklable."""

    def __init__(self, source, *, dataset_id: int, indicator: int, view_sampling: str, data_config):
        self.source = source
        self.dataset_id = int(dataset_id)
        self.indicator = int(indicator)
        self.view_sampling = str(view_sampling)
        c = data_config
        self.options = dict(
            num_frames=int(c.num_frames),
            resolution=int(c.resolution),
            frame_stride=int(c.frame_stride),
            orbit_max_stride=int(c.orbit_max_stride),
            single_view_ratio=float(c.single_view_ratio),
            max_context_views=int(c.max_context_views),
            square_mode=str(c.square_mode),
            pad_probability=float(c.pad_probability),
        )

    def __call__(self, scene_index, rng: np.random.Generator) -> dict:
        scene_index = int(scene_index)
        try:
            scene = self.source.get(scene_index)
            indicator = scene.indicator if self.indicator < 0 else self.indicator
            if hasattr(scene, "latent_mean"):  # a pre-encoded scene (genxd_jax.data.latents)
                from genxd_jax.data.latents import build_latent_example

                example = build_latent_example(
                    scene, rng, indicator=indicator, view_sampling=self.view_sampling, **self.options
                )
            else:
                example = build_example(
                    scene, rng, indicator=indicator, view_sampling=self.view_sampling, **self.options
                )
        except BadSceneError as err:
            return {BAD_KEY: err.reason, "message": str(err), "dataset_id": np.int32(self.dataset_id)}
        example["dataset_id"] = np.int32(self.dataset_id)
        example["scene_index"] = np.int32(scene_index)
        return example
