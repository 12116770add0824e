"""Per-parameter-group Adam for 3D Gaussians with the reference 3D-GS learning rates (optax).

The trainable parameters are a dict holding the float fields of :class:`genxd_jax.lift.Gaussians`
(:data:`PARAM_FIELDS`); the ``active`` mask is not a parameter. Learning rates (graphdeco-inria
gaussian-splatting ``arguments/__init__.py`` and ``GaussianModel.training_setup``):

================  =====================================================================
means             1.6e-4·extent, exponentially decayed to 1.6e-6·extent (``expon_lr``)
sh_dc             2.5e-3
sh_rest           2.5e-3 / 20
opacity_logits    0.05 (the 2023 INRIA release, gsplat, the GenXD evaluator; INRIA 2024: 0.025)
log_scales        5e-3
quats             1e-3
================  =====================================================================

with Adam β = (0.9, 0.999), ε = 1e-15. "extent" is the scene extent (:func:`genxd_jax.lift.fit.scene_extent`), INRIA's
``spatial_lr_scale``. The learning rates are injected into the optimiser state (``optax.inject_hyperparams``)
and set every iteration from :func:`learning_rates` (step = iteration − 1; INRIA evaluates its schedule at the
1-based iteration, a one-step difference in a 30k-step decay), so a compiled training step is independent of
the extent and the run length.

Slot surgery (densification) on the optimiser state is done with :func:`reset_slot_moments`, which zeroes the
Adam moments of chosen slots, exactly what the reference does to new, split and pruned points
(``cat_tensors_to_optimizer`` / ``_prune_optimizer``) and to all opacities at an opacity reset
(``replace_tensor_to_optimizer``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genxd_jax.lift.gaussians import PARAM_FIELDS

__all__ = [
    "PARAM_FIELDS",
    "adam_for",
    "expon_lr",
    "gaussian_params",
    "get_learning_rates",
    "learning_rates",
    "make_optimizer",
    "reset_slot_moments",
    "set_learning_rates",
    "with_params",
]


def gaussian_params(g) -> dict:
    """The trainable float fields of Gaussians ``g`` as a dict (the optimiser's parameter pytree);
    ``g.params()``."""
    return g.params()


def with_params(g, params: dict):
    """Gaussians ``g`` with its trainable fields replaced by ``params`` (``active`` kept); ``g.with_params``."""
    return g.with_params(params)


def expon_lr(step, lr_init: float, lr_final: float, max_steps: int):
    """Log-linear interpolation from ``lr_init`` (step 0) to ``lr_final`` (step ≥ max_steps).

    INRIA ``get_expon_lr_func`` with ``lr_delay_steps = 0``: exp((1 − t)·ln lr_init + t·ln lr_final),
    t = clip(step / max_steps, 0, 1). Works on Python numbers and traced JAX integers.
    """
    if lr_init <= 0 or lr_final <= 0:
        raise ValueError(f"expon_lr needs positive learning rates, got {lr_init} and {lr_final}")
    if max_steps <= 0:
        raise ValueError(f"expon_lr needs max_steps > 0, got {max_steps}")
    t = jnp.clip(jnp.asarray(step, jnp.float32) / float(max_steps), 0.0, 1.0)
    return jnp.exp((1.0 - t) * np.log(lr_init) + t * np.log(lr_final))


def learning_rates(optim_config, extent: float, iterations: int, step: int = 0) -> dict:
    """Learning rate of every field of :data:`PARAM_FIELDS` at optimiser step ``step`` (0-based), floats.

    Reads ``config.optim``; the position rate is :func:`expon_lr` over ``position_lr_max_steps`` (0: the
    run's ``iterations``) scaled by ``extent``.
    """
    c = optim_config
    if not extent > 0 or not np.isfinite(extent):
        raise ValueError(f"scene extent must be finite and positive, got {extent}")
    max_steps = int(c.position_lr_max_steps) or int(iterations)
    lr_init = float(c.position_lr_init) * float(extent)
    lr_final = float(c.position_lr_final) * float(extent)
    t = min(max(step / max_steps, 0.0), 1.0)  # host-side expon_lr (no device round trip per iteration)
    return {
        "means": float(np.exp((1.0 - t) * np.log(lr_init) + t * np.log(lr_final))),
        "sh_dc": float(c.feature_lr),
        "sh_rest": float(c.feature_lr) / float(c.feature_rest_divisor),
        "opacity_logits": float(c.opacity_lr),
        "log_scales": float(c.scaling_lr),
        "quats": float(c.rotation_lr),
    }


def make_optimizer(optim_config) -> optax.GradientTransformation:
    """optax ``multi_transform`` of one Adam per field of :data:`PARAM_FIELDS`.

    Each Adam is wrapped in ``optax.inject_hyperparams`` so that its learning rate is an array in the
    optimiser state: the training loop sets the rates of the current step with :func:`set_learning_rates`
    (the decaying position rate, scaled by the scene extent) and the compiled step does not depend on the
    extent or the run length, so one compilation serves every fit of the same image size and capacity.
    The initial rates are placeholders (1.0); always set them before the first update.
    The returned transformation expects the dict from :func:`gaussian_params`.
    """
    transforms = {name: adam_for(optim_config, 1.0) for name in PARAM_FIELDS}
    labels = {name: name for name in PARAM_FIELDS}
    return optax.multi_transform(transforms, labels)


def adam_for(optim_config, learning_rate) -> optax.GradientTransformation:
    """Adam with the config's β₁, β₂, ε (1e-15 by default, as INRIA), learning rate injectable.

    ``optax.inject_hyperparams(optax.adam)``: the learning rate lives in the state (see
    :func:`set_learning_rates`).
    """
    c = optim_config
    return optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps"))(
        learning_rate=learning_rate, b1=float(c.adam_b1), b2=float(c.adam_b2), eps=float(c.adam_eps)
    )


def set_learning_rates(opt_state, rates: dict):
    """The optimiser state with the injected ``learning_rate`` of each group in ``rates`` {field: lr} replaced.

    A leaf is the learning rate of group ``f`` when its tree path names both ``f`` and ``learning_rate``.
    Jittable (``rates`` values may be traced).
    """

    def replace(path, leaf):
        names = _path_names(path)
        if "learning_rate" not in names:
            return leaf
        for field, lr in rates.items():
            if field in names:
                return jnp.asarray(lr, dtype=jnp.asarray(leaf).dtype).reshape(jnp.shape(leaf))
        return leaf

    return jax.tree_util.tree_map_with_path(replace, opt_state)


def get_learning_rates(opt_state) -> dict:
    """{field: learning rate} currently in the optimiser state (host floats)."""
    out = {}

    def visit(path, leaf):
        names = _path_names(path)
        if "learning_rate" in names:
            for field in PARAM_FIELDS:
                if field in names:
                    out[field] = float(leaf)
        return leaf

    jax.tree_util.tree_map_with_path(visit, opt_state)
    return out


def _path_names(path) -> set:
    names = set()
    for key in path:
        for attr in ("key", "name"):
            value = getattr(key, attr, None)
            if isinstance(value, str):
                names.add(value)
    return names


def reset_slot_moments(opt_state, mask, *, fields=PARAM_FIELDS):
    """Zeroes the optimiser state of the slots where ``mask`` (N,) is True.

    Every array leaf of ``opt_state`` whose tree path names one of ``fields`` (the Adam ``mu``/``nu`` of
    those parameter groups) and whose leading dimension is N is reset in the masked rows; scalar counts are
    untouched. Pass ``fields=("opacity_logits",)`` for the reference opacity reset. Jittable.
    """
    mask = jnp.asarray(mask)
    n = mask.shape[0]
    fields = set(fields)

    def reset(path, leaf):
        if not hasattr(leaf, "ndim") or leaf.ndim == 0 or leaf.shape[0] != n:
            return leaf
        if not (_path_names(path) & fields):
            return leaf
        m = mask.reshape((n,) + (1,) * (leaf.ndim - 1))
        return jnp.where(m, jnp.zeros_like(leaf), leaf)

    return jax.tree_util.tree_map_with_path(reset, opt_state)
