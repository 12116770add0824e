"""Per-clip bookkeeping: atomic file writes and the stage manifest that makes ``--resume`` skip finished work.

``<clip>/.work/manifest.json`` maps each finished stage to its timing and results. A stage writes into a
temporary path and renames it into place before it is marked done, so a killed run leaves either a finished
stage or nothing that counts as one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile


def atomic_write_json(path: str, obj) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def replace_dir(tmp_dir: str, final_dir: str) -> None:
    """Moves a finished temporary folder into place (removing an older one)."""
    if os.path.isdir(final_dir):
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


class Manifest:
    """The finished stages of one clip (``<clip>/.work/manifest.json``)."""

    def __init__(self, clip_dir: str):
        self.path = os.path.join(clip_dir, ".work", "manifest.json")
        self.stages: dict[str, dict] = {}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.stages = json.load(f).get("stages", {})

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def get(self, stage: str) -> dict:
        return self.stages[stage]

    def mark(self, stage: str, info: dict) -> None:
        self.stages[stage] = info
        atomic_write_json(self.path, {"stages": self.stages})

    def clear(self) -> None:
        self.stages = {}
        if os.path.exists(self.path):
            os.remove(self.path)
