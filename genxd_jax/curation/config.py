"""Run settings of the curation pipeline (ml_collections); the CLI fills the user-facing ones."""

from __future__ import annotations

import ml_collections


def default_curation_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    # Frames.
    cfg.size = 256  # shorter side of the written frames (px); 0 keeps the input size
    cfg.stride = 1
    cfg.max_frames = 0  # 0 = all
    cfg.jpeg_quality = 95
    cfg.min_frames = 3
    # Segmentation (default motion segmenter; genxd_jax.curation.segment).
    cfg.segmenter = "motion"  # motion | none (user masks replace it)
    cfg.seg = ml_collections.ConfigDict()
    cfg.seg.gap = 3  # frames between the two views of each epipolar test
    cfg.seg.grid_step = 4  # px between tracked points
    cfg.seg.sampson_px = 1.0  # outlier threshold on sqrt(Sampson error), px
    cfg.seg.min_points = 12  # outliers needed to form an object in one frame
    cfg.seg.radius_frac = 0.035  # disc radius around outliers for clustering, × shorter side
    cfg.seg.dilate_px = 5  # extra margin of the object masks
    cfg.seg.min_track_frac = 0.2  # an instance must appear in this fraction of frames
    # SfM (genxd_jax.curation.sfm).
    cfg.sfm = ml_collections.ConfigDict()
    cfg.sfm.max_num_features = 4096
    cfg.sfm.overlap = 10
    cfg.sfm.quadratic_overlap = True
    cfg.sfm.mask_dilate_px = 6
    cfg.sfm.init_tri_angles = (16.0, 4.0)
    cfg.sfm.max_mean_reproj_px = 1.5
    cfg.sfm.focal_range = (0.3, 4.0)  # sane focal / max(W, H) for self-calibration
    cfg.sfm.min_registered_frac = 1.0
    cfg.sfm.seed = 0
    cfg.sfm.num_threads = -1
    cfg.sfm.verbose = False  # COLMAP's own log (errors only when False)
    # Depth alignment and tracking.
    cfg.align = "median"  # median (paper eq. 2) | lstsq
    cfg.track = ml_collections.ConfigDict()
    cfg.track.win = 11  # smaller than the usual 21: a window straddling the object edge biases the track
    cfg.track.levels = 3
    cfg.track.fb_px = 0.5
    cfg.track.max_points = 400  # per object and frame
    cfg.track.min_distance = 3
    cfg.track.erode_px = 4  # keypoints at least ~win/2 inside the object mask
    # Filter.
    cfg.min_motion = 0.0  # reject clips whose motion strength (×100) is below this
    return cfg
