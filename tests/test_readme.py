"""Runs the README's CPU-runnable snippets, so that the documentation cannot drift from the code.

A fenced block is a test case when the line just before it is a marker:

* ``<!-- test:python -->``: the block is run as a Python script (``sys.executable``);
* ``<!-- test:shell -->``: the block is run by ``bash -euo pipefail``, ``python`` being ``sys.executable``.

Unmarked blocks (installation, training, anything needing the released weights, a dataset or an accelerator)
are not run. Each snippet runs in its own process, on CPU, in a fresh working directory (a sandbox) that holds
what the README takes for granted, backed by the shared fixtures:

* ``ckpt/``: the tiny checkpoint ``genxd-tiny-a``, in the released layout (``unet/``, ``vae/``, ``scheduler/``);
* ``svd/unet/``: the tiny Stable Video Diffusion UNet of ``svd-init-tiny`` (tiny-a's shape);
* ``cat.png``, ``street.jpg``, ``views/{a,b,c}.png`` + ``views/cams.json``: procedural renders
  (``genxd_jax.data.synthetic``).

The snippets show the released settings (256 px, 12 frames, 25 steps), which take minutes per sample on a CPU
even with the tiny network, so sampling snippets are shrunk first by the substitutions in ``FAST_PYTHON`` and
``FAST_GENERATE_ARGS`` (``test_fast_substitutions_still_apply`` fails when the README stops matching them).
The processes share a JAX compilation cache, so programs are compiled once (the command-line sampler runs
with ``--no-progress``, which leaves its loop without a host callback and so cacheable).
"""

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"^<!--\s*test:(\w+)\s*-->\s*$")
KINDS = ("python", "shell")

# Python snippets: (pattern, replacement) applied in order, each at least once over the README (in
# `test_fast_substitutions_still_apply`); they turn the released sampling settings into CPU-sized ones.
FAST_PYTHON = [
    (r'preprocess_image\("cat\.png", 256\)', 'preprocess_image("cat.png", 64)'),
    (r"orbit_trajectory\(12\b", "orbit_trajectory(4"),
    (r"num_inference_steps=25\b", "num_inference_steps=2"),
    # Lifting to 3D: a few fit iterations with the tiny fitting recipe, fewer and smaller generation calls.
    (r"iterations=2000, seed=0\)",
     'iterations=20, seed=0, config=__import__("genxd_jax.lift.fit_config", fromlist=["_"]).get_config("tiny"))'),
    (r"spline_trajectory\(c2w, 18\)", "spline_trajectory(c2w, 4)"),
    (r'read_scene\("synthetic", "3d/0/0", size=64\)', 'read_scene("synthetic", "3d/0/0", size=32)'),
    (r"scene\.intrinsics\[1\], 64, 64,", "scene.intrinsics[1], 32, 32,"),
    (r"frames=12, num_context=3\b", "frames=5, num_context=3"),
]
# Shell snippets: appended to every `python -m genxd_jax.generate` command (argparse keeps the last value).
FAST_GENERATE_ARGS = "--size 64 --frames 4 --steps 2 --no-progress"
GENERATE_COMMAND = re.compile(r"^(python -m genxd_jax\.generate\b.*)$", re.MULTILINE)
# ... and to every `python -m genxd_jax.reconstruct` command: 32 px, 3-frame calls, 20 tiny-recipe iterations; every
# fit then sees 6 views (3 anchors + 3 interpolated / 3 inputs + 1 path view × 3 shifts), so it compiles once.
FAST_RECONSTRUCT_ARGS = (
    "--size 32 --frames 3 --num-context 2 --steps 2 --iterations 20 --fit-config tiny --capacity 1024 "
    "--path-frames 1 --video-frames 3 --video-format gif --no-progress"
)
RECONSTRUCT_COMMAND = re.compile(r"^(python -m genxd_jax\.reconstruct\b.*)$", re.MULTILINE)
TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Snippet:
    """A marked fenced block of README.md: its kind, the 1-based line of its opening fence, and its text."""

    kind: str
    line: int
    code: str


def readme_snippets(text: str | None = None) -> list[Snippet]:
    """Every marked block of the README, in order; a marker must be followed directly by a fenced block."""
    lines = (README.read_text() if text is None else text).splitlines()
    snippets = []
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        kind = match.group(1)
        if kind not in KINDS:
            raise ValueError(f"README.md:{i + 1}: unknown snippet kind {kind!r} (expected one of {KINDS})")
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README.md:{i + 1}: a test marker must be followed by a fenced code block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"README.md:{i + 2}: unterminated code block")
        snippets.append(Snippet(kind, i + 2, "\n".join(lines[i + 2 : end]) + "\n"))
    return snippets


def make_fast(snippet: Snippet) -> str:
    """The snippet's code with the CPU-sized sampling settings."""
    if snippet.kind == "python":
        code = snippet.code
        for pattern, replacement in FAST_PYTHON:
            code = re.sub(pattern, replacement, code)
        return code
    joined = re.sub(r"\\\n\s*", "", snippet.code)  # line continuations
    joined = GENERATE_COMMAND.sub(lambda m: f"{m.group(1).rstrip()} {FAST_GENERATE_ARGS}", joined)
    return RECONSTRUCT_COMMAND.sub(lambda m: f"{m.group(1).rstrip()} {FAST_RECONSTRUCT_ARGS}", joined)


SNIPPETS = readme_snippets()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, fixtures_dir) -> pathlib.Path:
    """The working directory of the snippets: ckpt/, svd/unet/, cat.png and street.jpg (see the module doc)."""
    from genxd_jax.data.synthetic import make_synthetic_scene

    root = tmp_path_factory.mktemp("readme")
    (root / "ckpt").symlink_to(fixtures_dir / "genxd-tiny-a", target_is_directory=True)
    (root / "svd").mkdir()
    (root / "svd" / "unet").symlink_to(fixtures_dir / "svd-init-tiny" / "svd_unet", target_is_directory=True)
    Image.fromarray(make_synthetic_scene("3d", 0, 0, size=96).render(0)).save(root / "cat.png")
    street = make_synthetic_scene("4d", 0, 1, size=96).render(0)
    Image.fromarray(np.concatenate([street, street[:, :32]], axis=1)).save(root / "street.jpg")  # 128×96
    room = make_synthetic_scene("3d", 0, 1, size=96, num_frames=24)  # views/{a,b,c}.png + cams.json (few-view)
    (root / "views").mkdir()
    for name, t in zip("abc", (0, 3, 6)):
        Image.fromarray(room.render(t)).save(root / "views" / f"{name}.png")
    cams = {"c2w": room.c2w[[0, 3, 6]].tolist(), "intrinsics": room.intrinsics()[0].tolist()}
    (root / "views" / "cams.json").write_text(json.dumps(cams))
    return root


def snippet_env(cache_dir: pathlib.Path) -> dict[str, str]:
    """The snippets' environment: CPU, one device (as a user's machine), `python` = this interpreter."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_readme_has_marked_snippets():
    assert {s.kind for s in SNIPPETS} == set(KINDS), "README.md lost its test:python / test:shell markers"
    assert any("genxd_jax.generate" in s.code for s in SNIPPETS if s.kind == "shell")


def test_fast_substitutions_still_apply():
    """Each speed-up matches some marked snippet, so a README edit cannot silently make the tests slow."""
    python = "".join(s.code for s in SNIPPETS if s.kind == "python")
    for pattern, _ in FAST_PYTHON:
        assert re.search(pattern, python), f"FAST_PYTHON pattern {pattern!r} no longer matches the README"
    shell = "".join(make_fast(s) for s in SNIPPETS if s.kind == "shell")
    assert FAST_GENERATE_ARGS in shell
    assert FAST_RECONSTRUCT_ARGS in shell


def test_marker_parsing():
    text = "a\n<!-- test:python -->\n```python\nx = 1\n```\n<!-- test:shell -->\n```\necho \\\n  hi\n```\n"
    python, shell = readme_snippets(text)
    assert (python.kind, python.line, python.code) == ("python", 3, "x = 1\n")
    assert (shell.kind, shell.line) == ("shell", 7) and make_fast(shell) == "echo hi\n"
    with pytest.raises(ValueError, match="unknown snippet kind"):
        readme_snippets("<!-- test:perl -->\n```\n```\n")
    with pytest.raises(ValueError, match="followed by a fenced"):
        readme_snippets("<!-- test:shell -->\n\n```\n```\n")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"L{s.line}-{s.kind}" for s in SNIPPETS])
def test_readme_snippet(snippet: Snippet, sandbox):
    code = make_fast(snippet)
    if snippet.kind == "python":
        script = sandbox / f"snippet_L{snippet.line}.py"
        script.write_text(code)
        cmd = [sys.executable, script.name]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(
        cmd,
        cwd=sandbox,
        env=snippet_env(sandbox.with_name(sandbox.name + "_jax_cache")),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"README.md:{snippet.line} ({snippet.kind}) failed with exit code {proc.returncode}\n--- code\n{code}"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    for out in re.findall(r"--output\s+(\S+)", code):  # the generate commands wrote what they promise
        assert (sandbox / out / "preview.png").is_file() and (sandbox / out / "cameras.json").is_file(), out


def test_documented_config_overrides_exist():
    """Every ``--config.a.b=`` override shown in the README, the launch scripts and their README names a field
    of the stage configs (an override of a missing field is an error at start-up)."""
    sys.path.insert(0, str(REPO))
    from configs import stage1, stage2, stage3

    docs = [README, REPO / "launch" / "README.md", *sorted((REPO / "launch").glob("*.sh"))]
    fields = {m.group(1) for doc in docs for m in re.finditer(r"--config\.([A-Za-z_][\w.]*)=", doc.read_text())}
    assert fields, "no documented overrides found"
    for module in (stage1, stage2, stage3):
        for variant in ("tiny", "full"):
            config = module.get_config(variant)
            for field in sorted(fields):
                node = config
                for part in field.split("."):
                    assert part in node, f"--config.{field} (documented) is not a field of {module.__name__}:{variant}"
                    node = node[part]
