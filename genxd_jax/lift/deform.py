"""The 4DGaussians deformation network: HexPlane features -> per-Gaussian Δposition, Δlog-scale, Δrotation.

For a Gaussian with canonical mean μ, log-scale s and quaternion q (w, x, y, z) at time t ∈ [0, 1]
(hustvl/4DGaussians ``scene/deformation.py``, default settings: ``defor_depth`` 1, width W = 64, opacity and SH
heads off, ``apply_rotation`` off):

    f      = HexPlane(μ, t)                          (F features, :mod:`genxd_jax.lift.hexplane`)
    h      = Linear(F → W)(f)                        (the "feature_out" layer, no activation after it)
    Δμ     = Linear(W → 3)(ReLU(Linear(W → W)(ReLU(h))))
    Δs, Δq likewise with 3 and 4 outputs
    μ' = μ + Δμ,  s' = s + Δs,  q' = q + Δq         (added before activation: exp scale, normalised quaternion)

Initialisation as the reference ``initialize_weights``: Xavier-uniform weights (gain 1); the reference's
bias line re-initialises the *weight* by mistake, so its biases keep torch's default U(±1/√fan_in) — we do the
same. With a head's last layer zeroed (``zero_heads``) that head outputs exactly 0, so a network with all three
heads zeroed is the identity deformation.

Parameters are a plain pytree (dict of {"w": (in, out), "b": (out,)} layers); everything is jittable and
differentiable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.hexplane import HexPlaneSpec, hexplane_features

HEADS = {"pos": 3, "scale": 3, "rot": 4}


def _linear_init(key, fan_in: int, fan_out: int) -> dict:
    kw, kb = jax.random.split(key)
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))  # Xavier uniform, gain 1
    bound = 1.0 / float(np.sqrt(fan_in))  # torch.nn.Linear's default bias init (kept by the reference)
    return {
        "w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -limit, limit),
        "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
    }


def init_deform_mlp(key, feature_dim: int, width: int = 64) -> dict:
    """Parameters {"feature": layer, "pos"|"scale"|"rot": [layer(W→W), layer(W→out)]}; layer = {"w", "b"}."""
    if feature_dim < 1 or width < 1:
        raise ValueError(f"init_deform_mlp: feature_dim and width must be positive, got {feature_dim}, {width}")
    keys = jax.random.split(key, 1 + 2 * len(HEADS))
    params = {"feature": _linear_init(keys[0], feature_dim, width)}
    for i, (name, out) in enumerate(HEADS.items()):
        params[name] = [_linear_init(keys[1 + 2 * i], width, width), _linear_init(keys[2 + 2 * i], width, out)]
    return params


def zero_heads(params: dict, heads=tuple(HEADS)) -> dict:
    """``params`` with the last layer (weight and bias) of each head in ``heads`` set to zero: those heads then
    output exactly 0 (with all three zeroed the deformation is the identity)."""
    out = dict(params)
    for name in heads:
        first, last = params[name]
        out[name] = [first, jax.tree_util.tree_map(jnp.zeros_like, last)]
    return out


def _dense(layer, x):
    return jnp.matmul(x, layer["w"], precision=jax.lax.Precision.HIGHEST) + layer["b"]


def deform_mlp(params: dict, features):
    """Features (N, F) -> (Δμ (N, 3), Δlog-scale (N, 3), Δquat (N, 4))."""
    h = _dense(params["feature"], features)
    outs = []
    for name in HEADS:
        first, last = params[name]
        outs.append(_dense(last, jax.nn.relu(_dense(first, jax.nn.relu(h)))))
    return tuple(outs)


def deform_gaussians(g: Gaussians, grids, mlp: dict, aabb, t) -> Gaussians:
    """Gaussians ``g`` (canonical) deformed to time ``t`` (scalar in [0, 1], may be traced).

    Means, log-scales and quaternions get the network's offsets (before activation); opacity and SH are
    unchanged. Inactive slots are left exactly as they are (they never render either way).
    """
    feats = hexplane_features(grids, g.means, t, aabb)
    d_pos, d_scale, d_rot = deform_mlp(mlp, feats)
    act = g.active[:, None]
    return g.replace(
        means=jnp.where(act, g.means + d_pos, g.means),
        log_scales=jnp.where(act, g.log_scales + d_scale, g.log_scales),
        quats=jnp.where(act, g.quats + d_rot, g.quats),
    )


def check_mlp(mlp: dict, spec: HexPlaneSpec, *, what: str = "deformation") -> int:
    """Validates the MLP shapes against the HexPlane feature size; returns the width W (host-side)."""
    for name in ("feature", *HEADS):
        if name not in mlp:
            raise ValueError(f"{what}: missing layer {name!r}")
    w = np.shape(mlp["feature"]["w"])
    if len(w) != 2 or w[0] != spec.feature_dim:
        raise ValueError(f"{what}: feature layer weight has shape {w}, expected ({spec.feature_dim}, W)")
    width = int(w[1])
    for name, out in HEADS.items():
        shapes = [tuple(np.shape(layer["w"])) for layer in mlp[name]]
        if shapes != [(width, width), (width, out)]:
            raise ValueError(f"{what}: head {name!r} has weight shapes {shapes}, expected "
                             f"[({width}, {width}), ({width}, {out})]")
    return width


__all__ = ["HEADS", "check_mlp", "deform_gaussians", "deform_mlp", "init_deform_mlp", "zero_heads"]
