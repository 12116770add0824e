"""Camera poses and sparse points by SfM on the static part of a clip, through pycolmap (paper §3 step 2).

Incremental mapping on SIFT features, sequential matching (video), and per-image masks that keep features off
the potentially moving objects (pycolmap reads ``<mask dir>/<image name>.png``; black = no features). The
result verifies itself (every frame registered, mean reprojection error, a sane focal length) and the
mapping is retried with other settings before the clip is given up (spec/curation.md §1, §8):

1. COLMAP's default initial triangulation angle (16°), self-calibration (or the given intrinsics, fixed);
2. init angle 4° (small-baseline clips fail at 16°; 4° alone can converge to a wrong model, hence the order);
3. and 4. the same two with a fixed focal prior (1.2 × the longer side, COLMAP's default guess), for paths
   where self-calibration drifts; the model that verifies is then bundle-adjusted once more with the focal
   length free (self-calibration from a good start), kept if it still verifies;
5. a wide initial pair (frames at 1/4 and 3/4 of the clip) with the fixed prior (or the known intrinsics).

Output: ``<clip>/0/{cameras,images,points3D}.bin`` (no ``rigs.bin``/``frames.bin``, the released layout) and
a ``project.ini`` recording the settings that worked.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import cv2
import numpy as np

from genxd_jax.data.colmap import finalize_model_dir


class SfmFailure(RuntimeError):
    """No attempt produced a verified model; ``attempts`` says why each failed."""

    def __init__(self, message: str, attempts: list[dict]):
        super().__init__(message)
        self.attempts = attempts


@dataclasses.dataclass
class SfmResult:
    model_dir: str
    attempts: list[dict]  # one dict per try: settings, registered, reprojection error, focal, verdict
    chosen: dict


def write_feature_masks(mask_dir: str, names: list[str], masks: np.ndarray | None, dilate_px: int) -> str | None:
    """COLMAP masks ``<mask_dir>/<name>.png``: 255 where features may be extracted, 0 on (dilated) objects."""
    if masks is None or not np.any(masks):
        return None
    os.makedirs(mask_dir, exist_ok=True)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
    for name, mask in zip(names, masks, strict=True):
        obj = cv2.dilate((mask > 0).astype(np.uint8), kernel)
        cv2.imwrite(os.path.join(mask_dir, name + ".png"), np.where(obj > 0, 0, 255).astype(np.uint8))
    return mask_dir


def _attempts(cfg, known_k: bool) -> list[dict]:
    out = [{"init_min_tri_angle": float(a), "focal": "known" if known_k else "self-calibrated"}
           for a in cfg.init_tri_angles]
    if not known_k:
        out += [{"init_min_tri_angle": float(a), "focal": "fixed-prior"} for a in cfg.init_tri_angles]
    # Last resort: initialise from frames a quarter and three quarters into the clip (a wide baseline that
    # COLMAP's own choice of a well-matched, often adjacent, pair can miss on slow video).
    out.append({"init_min_tri_angle": float(min(cfg.init_tri_angles)), "focal": "known" if known_k else "fixed-prior",
                "init_pair": "wide"})
    return out


def _image_ids(database: str) -> dict[str, int]:
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        return {img.name: int(img.image_id) for img in db.read_all_images()}
    finally:
        db.close()


def _verify(rec, n_frames: int, width: int, height: int, cfg, attempt: dict) -> str | None:
    """Why a reconstruction is not acceptable, or None."""
    registered = rec.num_reg_images()
    if registered < max(3, int(np.ceil(cfg.min_registered_frac * n_frames))):
        return f"registered {registered}/{n_frames} frames"
    err = rec.compute_mean_reprojection_error()
    if not np.isfinite(err) or err > cfg.max_mean_reproj_px:
        return f"mean reprojection error {err:.2f} px > {cfg.max_mean_reproj_px}"
    if attempt["focal"] == "self-calibrated":
        cam = next(iter(rec.cameras.values()))
        ratio = cam.mean_focal_length() / max(width, height)
        lo, hi = cfg.focal_range
        if not lo <= ratio <= hi:
            return f"focal length drifted to {ratio:.2f} × the longer side"
    return None


def _refine_focal(rec, n_frames: int, width: int, height: int, cfg, attempt: dict):
    """A model mapped with the fixed focal prior, then a global bundle adjustment that frees the focal length
    (and radial distortion): self-calibration from a good starting point, which converges where calibrating
    during incremental mapping collapsed. Kept only if it verifies; the attempt records the outcome."""
    import pycolmap

    refined = pycolmap.Reconstruction(rec)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length, opts.refine_extra_params, opts.refine_principal_point = True, True, False
    opts.print_summary = False
    try:
        pycolmap.bundle_adjustment(refined, opts)
    except Exception as err:  # noqa: BLE001 - keep the fixed-prior model
        attempt["refined"] = f"failed: {err}"
        return rec
    check = dict(attempt, focal="self-calibrated")
    verdict = _verify(refined, n_frames, width, height, cfg, check)
    if verdict is not None:
        attempt["refined"] = f"rejected: {verdict}"
        return rec
    attempt.update(focal="prior-then-refined", refined="ok",
                   focal_px=float(next(iter(refined.cameras.values())).mean_focal_length()),
                   mean_reprojection_error_px=float(refined.compute_mean_reprojection_error()))
    return refined


def run_sfm(
    image_dir: str,
    names: list[str],
    size_hw: tuple[int, int],
    work_dir: str,
    out_model_dir: str,
    cfg,
    *,
    masks: np.ndarray | None = None,
    intrinsics: tuple[float, float, float, float] | None = None,
    log=print,
) -> SfmResult:
    """SfM of ``image_dir/<names>`` (all the clip's frames, size_hw = (H, W)) into ``out_model_dir``.

    ``masks``: (F, H, W) instance ids (0 = static) or None; ``intrinsics``: (fx, fy, cx, cy) in pixels of the
    written images (COLMAP convention), kept fixed. ``work_dir`` holds the database and the attempts.
    Raises :class:`SfmFailure` when no attempt verifies.
    """
    import pycolmap

    if not cfg.get("verbose", False):
        pycolmap.logging.minloglevel = 2  # COLMAP's per-image INFO/WARNING lines drown the progress bars
    height, width = size_hw
    os.makedirs(work_dir, exist_ok=True)
    mask_dir = write_feature_masks(os.path.join(work_dir, "masks"), names, masks, cfg.mask_dilate_px)
    database = os.path.join(work_dir, "database.db")
    if os.path.exists(database):
        os.remove(database)
    reader = pycolmap.ImageReaderOptions()
    if intrinsics is not None:
        reader.camera_model = "PINHOLE"
        reader.camera_params = ",".join(repr(float(v)) for v in intrinsics)
    else:
        reader.camera_model = "SIMPLE_RADIAL"
    if mask_dir is not None:
        reader.mask_path = mask_dir
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = int(cfg.max_num_features)
    extraction.num_threads = int(cfg.num_threads)
    pycolmap.extract_features(
        database, image_dir, image_names=list(names), camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu,
    )
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = int(cfg.num_threads)
    pairing = pycolmap.SequentialPairingOptions(
        overlap=int(cfg.overlap), quadratic_overlap=bool(cfg.quadratic_overlap), loop_detection=False
    )
    pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                              device=pycolmap.Device.cpu)
    attempts = []
    for n, attempt in enumerate(_attempts(cfg, intrinsics is not None)):
        opts = pycolmap.IncrementalPipelineOptions()
        opts.multiple_models = False
        opts.random_seed = int(cfg.seed)
        opts.num_threads = int(cfg.num_threads)
        opts.mapper.init_min_tri_angle = attempt["init_min_tri_angle"]
        if attempt["focal"] != "self-calibrated":
            opts.ba_refine_focal_length = False
            opts.ba_refine_principal_point = False
            # Radial distortion is fixed too: refined on a small-baseline initial pair it runs away (k ≈ 2) and
            # no further image registers; the final bundle adjustment of `_refine_focal` frees both.
            opts.ba_refine_extra_params = False
            opts.mapper.abs_pose_refine_focal_length = False
            opts.mapper.abs_pose_refine_extra_params = False
        if attempt.get("init_pair") == "wide":
            ids = _image_ids(database)
            opts.init_image_id1 = ids[names[len(names) // 4]]
            opts.init_image_id2 = ids[names[(3 * len(names)) // 4]]
        out = os.path.join(work_dir, f"attempt{n}")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        try:
            models = pycolmap.incremental_mapping(database, image_dir, out, opts)
        except Exception as err:  # noqa: BLE001 - pycolmap raises several types; recorded, then retried
            models, attempt["error"] = {}, str(err)
        if models:
            rec = max(models.values(), key=lambda r: r.num_reg_images())
            cam = next(iter(rec.cameras.values()))
            attempt.update(
                registered=int(rec.num_reg_images()),
                mean_reprojection_error_px=float(rec.compute_mean_reprojection_error()),
                points=int(rec.num_points3D()),
                focal_px=float(cam.mean_focal_length()),
            )
            verdict = _verify(rec, len(names), width, height, cfg, attempt)
            if verdict is None and attempt["focal"] == "fixed-prior":
                rec = _refine_focal(rec, len(names), width, height, cfg, attempt)
        else:
            rec, verdict = None, attempt.get("error", "no model")
        attempt["verdict"] = verdict or "ok"
        attempts.append(attempt)
        log(f"sfm attempt {n + 1}: {attempt}")
        if verdict is None:
            tmp = out_model_dir + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            rec.write_binary(tmp)
            finalize_model_dir(tmp)
            _write_project_ini(os.path.join(tmp, "project.ini"), attempt, cfg)
            shutil.rmtree(out_model_dir, ignore_errors=True)
            os.replace(tmp, out_model_dir)
            return SfmResult(out_model_dir, attempts, attempt)
    reasons = "; ".join(
        f"({a['init_min_tri_angle']:g}°, {a['focal']}{', wide init pair' if 'init_pair' in a else ''}) {a['verdict']}"
        for a in attempts
    )
    raise SfmFailure(f"SfM failed after {len(attempts)} attempts: {reasons}", attempts)


def _write_project_ini(path: str, attempt: dict, cfg) -> None:
    """A minimal COLMAP project file (paths relative to the clip folder) with the settings used."""
    lines = [
        "log_to_stderr=false",
        "log_level=2",
        "database_path=",
        "image_path=../images",
        "[ImageReader]",
        f"camera_model={'PINHOLE' if attempt['focal'] == 'known' else 'SIMPLE_RADIAL'}",
        "single_camera=true",
        "[SiftExtraction]",
        f"max_num_features={int(cfg.max_num_features)}",
        "[SequentialMatching]",
        f"overlap={int(cfg.overlap)}",
        f"quadratic_overlap={'true' if cfg.quadratic_overlap else 'false'}",
        "[Mapper]",
        f"init_min_tri_angle={attempt['init_min_tri_angle']:g}",
        f"ba_refine_focal_length={'false' if attempt['focal'] in ('known', 'fixed-prior') else 'true'}",
        "multiple_models=false",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
