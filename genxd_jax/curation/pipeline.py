"""Curating one clip, stage by stage (paper §3), resumably; and a batch of clips in parallel processes.

Stages and what each leaves in ``OUT/<clip>/`` (temporary path, then rename; ``.work/manifest.json`` marks it
done):

========== ================================================================================================
frames     ``images/<stem>.jpg`` (sampled, shorter side ``size``), ``.work/frames.json``
segment    ``.work/masks.npz``: (F, H, W) uint16 instance ids (user masks, the motion segmenter, or none)
sfm        ``0/{cameras,images,points3D}.bin`` + ``0/project.ini`` (:mod:`genxd_jax.curation.sfm`)
depth      ``.work/depth.npz``: (F, H, W) float32 z-depth in the SfM scale (eq. 1 sparse depth, eq. 2)
track      ``.work/tracks.npz``: per object keypoints of frame i and their LK positions in frame i+1
motion     ``meta.json``: the motion strength (eqs. 3–4, × 100), per-object values, status, timings
========== ================================================================================================

A clip whose ``meta.json`` exists is finished (kept or rejected); ``resume=True`` skips it and, for an
unfinished clip, every stage already marked done. Any failure of a clip (unreadable input, SfM failure, too few
frames, bad mask/depth files) is written to its ``meta.json`` as ``status: "rejected"`` with the reason; it never
stops the batch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
import traceback

import cv2
import numpy as np
import tqdm

from genxd_jax.curation import align as align_lib
from genxd_jax.curation.depth import FileDepth, load_depth_model
from genxd_jax.curation.frames import ClipError, ClipSource, output_size, read_clip, resize_frames
from genxd_jax.curation.manifest import Manifest, atomic_write_json, replace_dir
from genxd_jax.curation.motion_field import motion_strength_from_correspondences
from genxd_jax.curation.segment import MotionSegmenter, NoSegmenter, load_masks
from genxd_jax.curation.sfm import SfmFailure, run_sfm
from genxd_jax.curation.sparse_depth import sample_map, sparse_depth_from_reconstruction
from genxd_jax.curation.track import LucasKanade, track_objects

STAGES = ("frames", "segment", "sfm", "depth", "track", "motion")
META_VERSION = 1


@dataclasses.dataclass
class CurateOptions:
    """User-facing settings (the CLI's flags); ``cfg`` holds the rest (:func:`default_curation_config`)."""

    masks: str | None = None  # DIR with <stem>.png per clip (single clip) or DIR/<clip>/<stem>.png (batch)
    depth: str | None = None  # DIR with <stem>.npy (same convention)
    depth_kind: str = "depth"
    depth_model: str | None = None  # "da2:WEIGHTS"
    intrinsics: tuple[float, float, float, float] | None = None  # input pixels, COLMAP convention
    batch: bool = False  # masks/depth folders are per clip (DIR/<clip>/...)


class ClipRejected(RuntimeError):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


_DEPTH_MODELS: dict[str, object] = {}


def _depth_model(spec: str):
    if spec not in _DEPTH_MODELS:
        _DEPTH_MODELS[spec] = load_depth_model(spec)
    return _DEPTH_MODELS[spec]


def _user_dir(folder: str | None, clip: ClipSource, batch: bool) -> str | None:
    """The clip's folder of user masks/depth: ``folder`` for a single clip; ``folder/<clip>`` in a batch, or
    None when that sub-folder does not exist (that clip then uses the segmenter / depth model / no depth)."""
    if folder is None:
        return None
    if not batch:
        return folder
    sub = os.path.join(folder, clip.name)
    return sub if os.path.isdir(sub) else None


class ClipCurator:
    """Runs the stages of one clip into ``out_dir/<clip.name>``."""

    def __init__(self, clip: ClipSource, out_dir: str, cfg, opts: CurateOptions, *, resume: bool, log=None):
        self.clip, self.cfg, self.opts = clip, cfg, opts
        self.dir = os.path.join(out_dir, clip.name)
        self.work = os.path.join(self.dir, ".work")
        self.resume = resume
        self.log = log or (lambda msg: tqdm.tqdm.write(f"[{clip.name}] {msg}"))
        self.timings: dict[str, float] = {}
        self.info: dict[str, dict] = {}

    # ----------------------------------------------------------------------------------------------- driver
    def run(self) -> dict:
        meta_path = os.path.join(self.dir, "meta.json")
        if self.resume and os.path.isfile(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            self.log(f"already finished ({meta.get('status')}), skipped")
            return meta
        if not self.resume and os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.work, exist_ok=True)
        manifest = Manifest(self.dir)
        for stage, info in manifest.stages.items():
            self.timings[stage] = info.get("seconds", 0.0)
            self.info[stage] = info
        stage = STAGES[0]
        try:
            with tqdm.tqdm(STAGES, desc=self.clip.name, unit="stage", leave=False) as bar:
                for stage in bar:
                    bar.set_postfix_str(stage)
                    if manifest.done(stage):
                        continue
                    start = time.perf_counter()
                    info = getattr(self, f"_stage_{stage}")()
                    info["seconds"] = round(time.perf_counter() - start, 3)
                    self.timings[stage] = info["seconds"]
                    self.info[stage] = info
                    if stage != "motion":
                        manifest.mark(stage, info)
                    self.log(f"{stage} done in {info['seconds']:.1f} s")
            meta = self._meta(status="kept", reason=None)
            motion = self.info["motion"]
            if motion["motion_strength"] < self.cfg.min_motion:
                meta.update(status="rejected", stage="filter",
                            reason=f"motion strength {motion['motion_strength']:.3f} < --min-motion "
                                   f"{self.cfg.min_motion:g}")
        except ClipRejected as err:
            meta = self._meta(status="rejected", reason=err.reason, stage=err.stage)
        except (ClipError, SfmFailure, ValueError) as err:
            meta = self._meta(status="rejected", reason=str(err), stage=stage)
        except Exception as err:  # noqa: BLE001 - one bad clip never stops the batch; the trace is kept
            meta = self._meta(status="rejected", reason=f"{type(err).__name__}: {err}", stage=stage)
            meta["traceback"] = traceback.format_exc()
        atomic_write_json(meta_path, meta)
        self.log(f"{meta['status']}" + (f": {meta['reason']}" if meta["reason"] else
                                        f", motion strength {meta['motion_strength']:.3f}"))
        return meta

    def _meta(self, *, status: str, reason: str | None, stage: str | None = None) -> dict:
        frames = self.info.get("frames", {})
        motion = self.info.get("motion", {})
        depth = self.info.get("depth", {})
        return {
            "version": META_VERSION,
            "clip": self.clip.name,
            "source": os.path.abspath(self.clip.path),
            "status": status,
            "reason": reason,
            "rejected_at": stage if status == "rejected" else None,
            "motion_strength": motion.get("motion_strength"),
            "motion_units": "paper eq. 4 x 100 (percent of the image size per frame), max over objects",
            "objects": motion.get("objects", []),
            "depth_source": depth.get("source"),
            "depth_kind": depth.get("kind"),
            "align": depth.get("align"),
            "segmenter": self.info.get("segment", {}).get("source"),
            "tracker": "lk",
            "num_frames": frames.get("num_frames"),
            "input_size": frames.get("input_hw"),
            "size": frames.get("out_hw"),
            "stride": self.cfg.stride,
            "min_motion": self.cfg.min_motion,
            "sfm": self.info.get("sfm"),
            "timings": dict(self.timings),
        }

    # ------------------------------------------------------------------------------------------ loaders
    def _frames_json(self) -> dict:
        with open(os.path.join(self.work, "frames.json")) as f:
            return json.load(f)

    def _frames(self) -> np.ndarray:
        fj = self._frames_json()
        return np.stack([cv2.imread(os.path.join(self.dir, "images", n))[..., ::-1] for n in fj["names"]])

    def _npz(self, name: str) -> dict:
        with np.load(os.path.join(self.work, name)) as z:
            return {k: z[k] for k in z.files}

    def _save_npz(self, name: str, **arrays) -> None:
        tmp = os.path.join(self.work, name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, os.path.join(self.work, name))

    # ------------------------------------------------------------------------------------------- stages
    def _stage_frames(self) -> dict:
        stems, frames = read_clip(self.clip, stride=self.cfg.stride, max_frames=self.cfg.max_frames)
        if len(frames) < self.cfg.min_frames:
            raise ClipRejected("frames", f"only {len(frames)} frames (need {self.cfg.min_frames})")
        input_hw = tuple(int(v) for v in frames.shape[1:3])
        out_hw = output_size(input_hw, self.cfg.size)
        frames = resize_frames(frames, out_hw)
        tmp = os.path.join(self.dir, "images.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        names = [stem + ".jpg" for stem in stems]
        for name, frame in zip(names, frames, strict=True):
            cv2.imwrite(os.path.join(tmp, name), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        replace_dir(tmp, os.path.join(self.dir, "images"))
        info = {"num_frames": len(names), "input_hw": list(input_hw), "out_hw": list(out_hw)}
        atomic_write_json(os.path.join(self.work, "frames.json"), {"stems": stems, "names": names, **info})
        return info

    def _stage_segment(self) -> dict:
        fj = self._frames_json()
        folder = _user_dir(self.opts.masks, self.clip, self.opts.batch)
        if folder is not None:
            masks, source = load_masks(folder, fj["stems"], tuple(fj["input_hw"]), tuple(fj["out_hw"])), "user"
        elif self.cfg.segmenter == "none":
            masks, source = NoSegmenter()(self._frames()), "none"
        elif self.cfg.segmenter == "motion":
            masks, source = MotionSegmenter(self.cfg.seg)(self._frames()), "motion"
        else:
            raise ValueError(f"unknown segmenter {self.cfg.segmenter!r}")
        self._save_npz("masks.npz", masks=masks)
        ids = sorted(int(k) for k in np.unique(masks) if k)
        return {"source": source, "objects": ids,
                "object_fraction": float(np.mean(masks > 0))}

    def _intrinsics_out(self) -> tuple[float, float, float, float] | None:
        if self.opts.intrinsics is None:
            return None
        fj = self._frames_json()
        sy, sx = (o / i for o, i in zip(fj["out_hw"], fj["input_hw"], strict=True))
        fx, fy, cx, cy = self.opts.intrinsics
        return fx * sx, fy * sy, cx * sx, cy * sy

    def _stage_sfm(self) -> dict:
        fj = self._frames_json()
        masks = self._npz("masks.npz")["masks"]
        sfm_cfg = self.cfg.sfm
        try:
            result = run_sfm(
                os.path.join(self.dir, "images"), fj["names"], tuple(fj["out_hw"]), os.path.join(self.work, "sfm"),
                os.path.join(self.dir, "0"), sfm_cfg, masks=masks, intrinsics=self._intrinsics_out(),
                log=lambda m: self.log(m),
            )
        except SfmFailure as err:
            raise ClipRejected("sfm", str(err)) from err
        shutil.rmtree(os.path.join(self.work, "sfm"), ignore_errors=True)  # database and attempts
        return {"attempts": result.attempts, "chosen": result.chosen}

    def _stage_depth(self) -> dict:
        import pycolmap

        fj = self._frames_json()
        out_hw = tuple(fj["out_hw"])
        rec = pycolmap.Reconstruction(os.path.join(self.dir, "0"))
        sparse = sparse_depth_from_reconstruction(rec, fj["names"])
        folder = _user_dir(self.opts.depth, self.clip, self.opts.batch)
        if folder is not None:
            source_obj = FileDepth(folder, self.opts.depth_kind)
            rel = [source_obj.load(s, tuple(fj["input_hw"]), out_hw) for s in fj["stems"]]
            kind, source = source_obj.kind, "files"
        elif self.opts.depth_model:
            model = _depth_model(self.opts.depth_model)
            rel = [np.asarray(model(frame), np.float32) for frame in tqdm.tqdm(
                self._frames(), desc=f"{self.clip.name} depth", leave=False)]
            kind, source = model.kind, self.opts.depth_model.split(":")[0]
        else:
            depth = np.stack([align_lib.interpolate_sparse_depth(uv, z, out_hw) for uv, z in sparse])
            self._save_npz("depth.npz", depth=depth)
            return {"source": "sfm_sparse_interpolated", "kind": "depth", "align": None,
                    "sparse_points_median": float(np.median([len(z) for _, z in sparse]))}
        # Pool all frames' samples for frames with too few of their own.
        pooled_uv = [(i, uv, z) for i, (uv, z) in enumerate(sparse)]
        depth, scales, shifts = [], [], []
        for i, (uv, z) in enumerate(sparse):
            if len(z) >= 20:
                fit = align_lib.align_depth(rel[i], uv, z, kind=kind, method=self.cfg.align)
            else:
                vals = np.concatenate([sample_map(rel[j], u) for j, u, _ in pooled_uv])
                tgt = np.concatenate([t for _, _, t in pooled_uv])
                ok = np.isfinite(vals) & (vals > 0) & np.isfinite(tgt) & (tgt > 0)
                a, b = align_lib.fit_scale_shift(vals[ok], (1 / tgt[ok]) if kind == "disparity" else tgt[ok],
                                                 self.cfg.align)
                fit = align_lib.Alignment(a, b, int(ok.sum()), kind)
            depth.append(fit.apply(rel[i]))
            scales.append(fit.scale)
            shifts.append(fit.shift)
        self._save_npz("depth.npz", depth=np.stack(depth))
        return {"source": source, "kind": kind, "align": self.cfg.align,
                "scale_median": float(np.median(scales)), "shift_median": float(np.median(shifts)),
                "sparse_points_median": float(np.median([len(z) for _, z in sparse]))}

    def _stage_track(self) -> dict:
        masks = self._npz("masks.npz")["masks"]
        t = self.cfg.track
        tracks = track_objects(self._frames(), masks, LucasKanade(t.win, t.levels, t.fb_px),
                               max_points=t.max_points, min_distance=t.min_distance, erode_px=t.erode_px)
        rows = [np.concatenate([np.full((len(p0), 1), k), np.full((len(p0), 1), i), p0, p1], 1)
                for k, pairs in tracks.items() for i, p0, p1 in pairs]
        table = np.concatenate(rows) if rows else np.zeros((0, 6))
        self._save_npz("tracks.npz", tracks=table)
        return {"tracked_points": int(len(table))}

    def _stage_motion(self) -> dict:
        import pycolmap

        fj = self._frames_json()
        h, w = fj["out_hw"]
        rec = pycolmap.Reconstruction(os.path.join(self.dir, "0"))
        c2w, ks = [], []
        for name in fj["names"]:
            img = rec.find_image_with_name(name)
            if img is None or not img.has_pose:  # unregistered (only if min_registered_frac < 1): no pairs
                c2w.append(np.full((4, 4), np.nan))
                ks.append(np.eye(3))
                continue
            w2c = np.eye(4)
            w2c[:3] = img.cam_from_world().matrix()
            c2w.append(np.linalg.inv(w2c))
            ks.append(img.camera.calibration_matrix())
        depth = self._npz("depth.npz")["depth"]
        table = self._npz("tracks.npz")["tracks"]
        objects: dict[int, list] = {}
        for k in np.unique(table[:, 0]).astype(int) if len(table) else []:
            rows = table[table[:, 0] == k]
            pairs = []
            for i in np.unique(rows[:, 1]).astype(int):
                r = rows[rows[:, 1] == i]
                pairs.append((i, r[:, 2:4], r[:, 4:6], sample_map(depth[i].astype(np.float64), r[:, 2:4])))
            objects[int(k)] = pairs
        strength, per_object = motion_strength_from_correspondences(objects, np.stack(ks), np.stack(c2w), (h, w))
        objs = [{"id": k, **v} for k, v in sorted(per_object.items())]
        return {"motion_strength": strength, "objects": objs}


def _curate_one(args) -> dict:
    clip, out_dir, cfg, opts, resume = args
    try:
        return ClipCurator(clip, out_dir, cfg, opts, resume=resume).run()
    except Exception as err:  # noqa: BLE001 - even a failure to write meta.json must not stop the batch
        return {"clip": clip.name, "status": "rejected", "reason": f"{type(err).__name__}: {err}"}


def curate_batch(clips: list[ClipSource], out_dir: str, cfg, opts: CurateOptions, *, jobs: int = 1,
                 resume: bool = False) -> list[dict]:
    """Curates clips (in ``jobs`` processes), with a progress bar over clips; returns their meta dicts."""
    os.makedirs(out_dir, exist_ok=True)
    jobs = max(1, min(int(jobs), len(clips)))
    if jobs > 1 and cfg.sfm.num_threads == -1:
        cfg = cfg.copy_and_resolve_references()
        cfg.sfm.num_threads = max(1, (os.cpu_count() or 1) // jobs)
    work = [(clip, out_dir, cfg, opts, resume) for clip in clips]
    results: list[dict] = [None] * len(clips)  # type: ignore[list-item]
    with tqdm.tqdm(total=len(clips), desc="clips", unit="clip") as bar:
        if jobs == 1:
            for n, item in enumerate(work):
                results[n] = _curate_one(item)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                futures = {pool.submit(_curate_one, item): n for n, item in enumerate(work)}
                for fut in concurrent.futures.as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    return results
