"""The mechanical map between NNX parameter paths and PyTorch state_dict keys.

An NNX path `('down_blocks', 0, 'resnets', 1, 'mv_res_block', 'conv1', 'kernel')` is the PyTorch key
`down_blocks.0.resnets.1.mv_res_block.conv1.weight`: the path joined with dots, with `kernel` and `scale`
renamed `weight`. Arrays change layout only:

| array                     | PyTorch            | NNX (channels last)  |
| ------------------------- | ------------------ | -------------------- |
| Linear weight             | (out, in)          | (in, out)            |
| Conv2d weight             | (O, I, kh, kw)     | (kh, kw, I, O)       |
| Conv3d weight             | (O, I, kt, kh, kw) | (kt, kh, kw, I, O)   |
| biases, norm scales, logits | unchanged        | unchanged            |
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from genxd_jax.convert.safetensors_io import CheckpointError
from genxd_jax.sharding import DEFAULT_RULES, Rules, state_shardings

_RENAMED = {"kernel": "weight", "scale": "weight"}


def torch_key(path: tuple) -> str:
    """The PyTorch state_dict key of an NNX parameter path."""
    parts = [str(p) for p in path]
    parts[-1] = _RENAMED.get(parts[-1], parts[-1])
    return ".".join(parts)


def _is_kernel(path: tuple) -> bool:
    return str(path[-1]) == "kernel"


def to_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
    """NNX array -> PyTorch layout (see module docstring)."""
    if not _is_kernel(path) or value.ndim < 2:
        return value
    return np.transpose(value, (value.ndim - 1, value.ndim - 2) + tuple(range(value.ndim - 2)))


def from_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
    """PyTorch array -> NNX layout (the inverse of `to_torch_layout`)."""
    if not _is_kernel(path) or value.ndim < 2:
        return value
    return np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))


def _params(module: nnx.Module) -> dict[tuple, nnx.Variable]:
    return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def flat_torch_state(module: nnx.Module, *, progress: bool = False) -> dict[str, np.ndarray]:
    """{torch key: numpy array in PyTorch layout} of every parameter of `module` (gathered to host)."""
    out = {}
    for path, var in tqdm(_params(module).items(), desc="gathering parameters", disable=not progress):
        out[torch_key(path)] = to_torch_layout(path, np.asarray(jax.device_get(var.get_value())))
    return out


def _format_problems(missing, unexpected, mismatched, limit: int = 20) -> str:
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            shown = "\n    ".join(items[:limit])
            more = f"\n    … and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {len(items)} {title}:\n    {shown}{more}")
    return "\n".join(lines)


def load_torch_state(module: nnx.Module, tensors: dict[str, np.ndarray], *, mesh=None,
                     rules: Rules = DEFAULT_RULES, source: str = "checkpoint",
                     progress: bool = False) -> nnx.Module:
    """A copy of `module` (concrete or abstract) whose parameters are `tensors` (PyTorch keys and layouts).

    Strict: every parameter must be present with the right shape and no tensor may be left over; all
    problems are reported in one `CheckpointError`. Values are cast to each parameter's dtype. With `mesh`,
    each parameter is placed by its logical axis names; otherwise on the default device.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    flat = {tuple(p): v for p, v in nnx.to_flat_state(params)}
    expected = {torch_key(p): p for p in flat}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = []
    for key in sorted(set(expected) & set(tensors)):
        path = expected[key]
        want = tuple(flat[path].get_value().shape)
        got = from_torch_layout(path, tensors[key]).shape
        if tuple(got) != want:
            want_torch = to_torch_layout(path, np.empty(want, np.uint8)).shape
            mismatched.append(f"{key}: {source} has {tuple(tensors[key].shape)}, model needs {tuple(want_torch)}")
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{source} does not match the model:\n"
                              + _format_problems(missing, unexpected, mismatched))
    shardings = state_shardings(params, mesh, rules) if mesh is not None else None
    shard_flat = {tuple(p): s for p, s in nnx.to_flat_state(shardings)} if shardings is not None else {}
    values = {}
    for path, var in tqdm(flat.items(), desc="loading parameters", disable=not progress):
        arr = np.asarray(from_torch_layout(path, tensors[torch_key(path)]))
        dtype = var.get_value().dtype
        arr = arr.astype(jnp.dtype(dtype)) if arr.dtype != dtype else arr
        values[path] = jax.device_put(arr, shard_flat.get(path))
    new_params = nnx.from_flat_state([(p, flat[p].replace(values[p])) for p in flat])
    return nnx.merge(graphdef, new_params, rest)
