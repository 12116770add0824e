"""Runs notebooks/generate.ipynb and notebooks/evaluate.ipynb headless (nbclient) on CPU with the tiny fixture.

Each notebook is executed in a fresh IPython kernel running this interpreter (``sys.executable``), configured
through the ``GENXD_*`` environment variables its settings cell reads (tiny checkpoint, 64 px, 4 frames,
2 steps). A check cell appended to the in-memory copy prints a JSON summary of the kernel's variables, on which
the tests assert; the notebook files themselves are not modified. The two kernels share a JAX compilation
cache, so the denoising loop compiled by the first notebook is reused by the second.
"""

import json
import math
import pathlib
import sys

import nbclient
import nbformat
import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SIZE, FRAMES, STEPS, NUM_SCENES = 64, 4, 2, 2
SCHEDULE = "40:0.1:10"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, tiny_a) -> dict[str, str]:
    """Environment of the notebook kernels: CPU, the tiny fixture, small sizes, a kernel spec for this Python."""
    root = tmp_path_factory.mktemp("notebooks")
    # A kernel spec named python3 that starts this interpreter, found first through JUPYTER_PATH, so the
    # kernel never picks up another Python from a user or system kernel spec.
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return {
        "JUPYTER_PATH": str(root / "jupyter"),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "GENXD_CHECKPOINT": str(tiny_a),
        "GENXD_SIZE": str(SIZE),
        "GENXD_FRAMES": str(FRAMES),
        "GENXD_STEPS": str(STEPS),
        "GENXD_SCHEDULE": SCHEDULE,  # read by generate.ipynb only
        "GENXD_NUM_SCENES": str(NUM_SCENES),
        "GENXD_OUTPUT": str(root / "generate_outputs"),
    }


def run_notebook(name: str, env: dict[str, str], check: str):
    """Executes notebooks/<name> plus a final cell `check` that prints one JSON line; returns (nb, that JSON)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is stored with outputs"
    nb.cells.append(nbformat.v4.new_code_cell(check))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("XLA_FLAGS", raising=False)  # the kernel sees one CPU device, not the tests' eight
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()
    streams = [o for o in nb.cells[-1].outputs if o.output_type == "stream" and o.name == "stdout"]
    summary = json.loads("".join(o.text for o in streams).strip().splitlines()[-1])
    assert summary["executable"] == sys.executable
    return nb, summary


def outputs(nb, mime: str) -> list[str]:
    """The `mime` data of every display/result output of the notebook."""
    return [
        o.data[mime]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type in ("display_data", "execute_result") and mime in o.data
    ]


def stdout(nb) -> str:
    return "".join(o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stdout")


GENERATE_CHECK = """
import json, sys
import numpy as np
def describe(x):
    return {"shape": list(x.shape), "dtype": str(x.dtype), "finite": bool(np.isfinite(x).all()),
            "min": float(x.min()), "max": float(x.max())}
print(json.dumps({
    "executable": sys.executable, "device": DEVICE, "size": SIZE, "frames": FRAMES, "steps": STEPS,
    "schedule": [pipe.scheduler.sigma_max, pipe.scheduler.sigma_min, pipe.scheduler.rho],
    "context_index": [int(i) for i in context_index],
    "frames_3d": describe(frames_3d), "frames_4d": describe(frames_4d),
    "difference_3d_4d": float(np.abs(frames_3d - frames_4d).mean()),
    "written": {m: {k: str(v) for k, v in paths.items()} for m, paths in written.items()},
}))
"""


def test_generate_notebook(kernel_env):
    nb, s = run_notebook("generate.ipynb", kernel_env, GENERATE_CHECK)
    assert s["device"] == "CPU" and "on CPU" in stdout(nb)
    assert (s["size"], s["frames"], s["steps"]) == (SIZE, FRAMES, STEPS)  # the environment reached the settings
    assert s["schedule"] == [40.0, 0.1, 10.0]
    assert s["context_index"] == [0]
    for key in ("frames_3d", "frames_4d"):
        d = s[key]
        assert d["shape"] == [FRAMES, SIZE, SIZE, 3] and d["dtype"] == "float32" and d["finite"], d
        assert 0.0 <= d["min"] < d["max"] <= 1.0, d
    assert s["difference_3d_4d"] > 1e-4  # the indicator and the cameras change the result

    for mode, indicator in (("3d", 0), ("4d", 2)):
        paths = {k: pathlib.Path(v) for k, v in s["written"][mode].items()}
        assert sorted(p.name for p in paths["frames"].glob("*.png")) == [f"frame_{i:03d}.png" for i in range(FRAMES)]
        with Image.open(paths["video"]) as gif:
            assert gif.format == "GIF" and gif.size == (SIZE, SIZE) and gif.n_frames == FRAMES
        cams = json.loads(paths["cameras"].read_text())
        assert cams["indicator"] == indicator and cams["mode"] == mode and cams["steps"] == STEPS
        assert cams["schedule"] == SCHEDULE
        assert np.asarray(cams["c2w"]).shape == (FRAMES, 4, 4)
        assert Image.open(paths["preview"]).size == ((1 + FRAMES) * SIZE + 8, SIZE)

    gifs = [h for h in outputs(nb, "text/html") if "data:image/gif;base64," in h]
    assert len(gifs) == 1 and gifs[0].count("<img") == 2  # both videos shown inline
    assert len(outputs(nb, "image/png")) >= 2  # the input and the grid (matplotlib)


EVALUATE_CHECK = """
import json, sys
print(json.dumps({
    "executable": sys.executable, "names": names, "table": TABLE, "methods": list(METHODS),
    "generated_shape": list(generated.shape), "targets_shape": list(targets.shape),
    "context": context.tolist(),
    "per_frame": {m: {k: v.tolist() for k, v in d.items()} for m, d in per_frame.items()},
}))
"""


def test_evaluate_notebook(kernel_env):
    nb, s = run_notebook("evaluate.ipynb", kernel_env, EVALUATE_CHECK)
    n = 2 * NUM_SCENES
    assert s["generated_shape"] == s["targets_shape"] == [n, FRAMES, SIZE, SIZE, 3]
    assert s["names"] == [f"{kind} #{i}" for kind in ("3D", "4D") for i in range(NUM_SCENES)]
    assert s["methods"] == ["GenXD", "nearest context view"]
    context = np.asarray(s["context"])
    assert context.shape == (n, FRAMES) and context[:, 0].all() and context.sum() == n  # frame 0 is the context

    table = s["table"]
    assert [r["scene"] for r in table] == s["names"] + ["mean 3D", "mean 4D", "mean, all scenes"]
    columns = [f"{m} {metric}" for m in s["methods"] for metric in ("PSNR", "SSIM")]
    for row in table:
        assert list(row) == ["scene", "kind", *columns]
        for col in columns:
            assert math.isfinite(row[col]), (row["scene"], col)
            if col.endswith("SSIM"):
                assert -1.0 <= row[col] <= 1.0
            else:
                assert 0.0 < row[col] < 100.0
    # Each row is the mean PSNR over the target (non-context) frames of its scenes, from the per-frame values.
    for method in s["methods"]:
        per_frame = np.minimum(np.asarray(s["per_frame"][method]["psnr"]), 100.0)
        assert per_frame.shape == (n, FRAMES)
        targets = ~context
        for i, row in enumerate(table[:n]):
            np.testing.assert_allclose(row[f"{method} PSNR"], per_frame[i][targets[i]].mean(), rtol=1e-4)
        np.testing.assert_allclose(table[-1][f"{method} PSNR"], per_frame[targets].mean(), rtol=1e-4)
    # The baseline copies the context view: exact (PSNR inf) at the context frame, imperfect elsewhere.
    baseline = np.asarray(s["per_frame"]["nearest context view"]["psnr"])
    assert np.isinf(baseline[context]).all() and np.isfinite(baseline[~context]).all()

    markdown = outputs(nb, "text/markdown")
    assert len(markdown) == 1 and markdown[0].count("\n") == len(table) + 1
    assert all(name in markdown[0] for name in s["names"])
    assert len(outputs(nb, "image/png")) >= 3  # scenes overview, PSNR plots, frame comparison
