"""Adaptive density control of 3D-GS (clone / split / prune / opacity reset) as masked slot operations.

The rules are those of graphdeco-inria gaussian-splatting (``GaussianModel.densify_and_prune``,
``add_densification_stats``, ``reset_opacity``; ``train.py``), done inside the fixed capacity N of a
:class:`genxd_jax.lift.Gaussians` so shapes stay static under ``jit``:

* **Statistic.** After every iteration, for each Gaussian visible in that view (radius > 0), the norm of the
  gradient of the loss w.r.t. its projected 2D mean is accumulated, and a visibility count incremented. The
  reference rasteriser's 2D means are in NDC, x_ndc = (2·u + 1)/W − 1 for the pixel coordinate u, and its
  backward pass writes dL/dx_ndc = dL/du · 0.5·W (``backward.cu``: ``ddelx_dx = 0.5 * W``, likewise
  ``0.5 * H`` for y). Our renderer gives dL/du in pixels (``means2d_offset``), so :func:`ndc_grad_norm`
  multiplies x by 0.5·W and y by 0.5·H before the norm. The densification threshold 2e-4 refers to this
  NDC-scaled mean norm; do not change one without the other.
* **Densify** (every ``densify.every`` iterations after ``densify.start``, until ``densify.stop``): Gaussians
  whose mean statistic is ≥ the threshold are *cloned* (an exact copy into a free slot) when their largest
  scale is ≤ percent_dense·extent and *split* otherwise: two samples x = μ + R·(s ⊙ ε), ε ~ N(0, I), each with
  scales s / 1.6 (INRIA's s / (0.8·2)). The first child replaces the parent in its slot, the second takes a
  free slot. New slots and both split children start with zero Adam moments (INRIA concatenates zeros and
  drops the parent's state); a cloned parent keeps its moments.
* **Capacity.** Requests are granted in decreasing order of the statistic while free slots last; the rest are
  dropped and counted (``info["dropped"]``) so the caller can report saturation. The capacity is never
  exceeded.
* **Prune** (right after densifying): opacity < 0.005, and, once the iteration exceeds the opacity-reset
  interval, largest world scale > 0.1·extent or max screen radius > 20 px. INRIA zeroes its max-radius buffer
  in ``densification_postfix`` before pruning, so its screen-size test never removes anything;
  ``reference_radii_reset=True`` (default) keeps that, ``False`` tests the radii accumulated since the last
  densification. Pruned slots become inactive (their parameters are left as they were and must be ignored)
  and their Adam moments are zeroed.
* After densification all statistics are reset (INRIA ``densification_postfix``).
* **Opacity reset** (every 3000 iterations): opacity ← min(opacity, 0.01) on active slots, and the opacity
  Adam moments of all slots are zeroed (INRIA ``replace_tensor_to_optimizer``).

Slots that are inactive and not allocated are left bit-identical by every operation here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from genxd_jax.lift.gaussians import quaternion_to_rotation
from genxd_jax.lift.optim import reset_slot_moments


@struct.dataclass
class DensifyStats:
    """Per-slot densification statistics, all (N,) float32.

    ``grad_accum``: sum over visible iterations of the NDC-scaled ‖∂L/∂mean2D‖;
    ``denom``: number of iterations in which the slot was visible;
    ``max_radii``: largest screen radius (pixels) seen since the last densification.
    """

    grad_accum: jax.Array
    denom: jax.Array
    max_radii: jax.Array

    @classmethod
    def zeros(cls, capacity: int) -> "DensifyStats":
        z = jnp.zeros((capacity,), jnp.float32)
        return cls(grad_accum=z, denom=z, max_radii=z)

    def mean_grad(self):
        """Mean statistic per slot (0 where never visible), (N,)."""
        return jnp.where(self.denom > 0, self.grad_accum / jnp.maximum(self.denom, 1.0), 0.0)


def ndc_grad_norm(grad_means2d, width: int, height: int):
    """‖∂L/∂mean2D‖ in the reference NDC scaling from a pixel-space gradient (N, 2) -> (N,).

    dL/dx_ndc = dL/du·(0.5·W), dL/dy_ndc = dL/dv·(0.5·H) (see the module docstring).
    """
    scale = jnp.asarray([0.5 * width, 0.5 * height], jnp.float32)
    return jnp.linalg.norm(grad_means2d * scale, axis=-1)


def accumulate_stats(stats: DensifyStats, grad_means2d, radii, width: int, height: int) -> DensifyStats:
    """Adds one iteration's statistic: pixel gradient (N, 2) of the loss w.r.t. the 2D means, radii (N,)."""
    visible = radii > 0
    g = ndc_grad_norm(grad_means2d, width, height)
    return DensifyStats(
        grad_accum=stats.grad_accum + jnp.where(visible, g, 0.0),
        denom=stats.denom + visible.astype(jnp.float32),
        max_radii=jnp.where(visible, jnp.maximum(stats.max_radii, radii.astype(jnp.float32)), stats.max_radii),
    )


@functools.partial(jax.jit, static_argnames=("reference_radii_reset",))
def densify_and_prune(
    g,
    stats: DensifyStats,
    opt_state,
    key,
    *,
    extent,
    grad_threshold=2e-4,
    percent_dense=0.01,
    min_opacity=0.005,
    prune_big=False,
    max_screen_size=20.0,
    max_world_size=0.1,
    split_scale_divisor=1.6,
    reference_radii_reset: bool = True,
):
    """One INRIA densify-and-prune step on fixed-capacity Gaussians (see the module docstring).

    Args:
      g: :class:`genxd_jax.lift.Gaussians` with capacity N.
      stats: the accumulated :class:`DensifyStats`.
      opt_state: the optax state of the Gaussian parameters (Adam moments are reset per slot with
        :func:`genxd_jax.lift.optim.reset_slot_moments`); any pytree, or None.
      key: PRNG key for the split samples.
      extent: scene extent (world units), a scalar.
      prune_big: bool (may be traced): also prune big Gaussians (INRIA: iteration > opacity reset interval).
      reference_radii_reset: static; True reproduces INRIA (screen-size test sees zeroed radii).
    Returns:
      ``(g, stats, opt_state, info)``: new Gaussians, zeroed statistics, the updated optimiser state and
      ``info`` with int32 counts ``cloned``, ``split``, ``dropped`` (requests refused for lack of free
      slots), ``pruned`` and ``active``.
    """
    n = g.capacity
    extent = jnp.asarray(extent, jnp.float32)
    active = g.active
    grads = stats.mean_grad()
    scales = jnp.exp(g.log_scales)
    max_scale = jnp.max(scales, axis=-1)
    high = active & (grads >= grad_threshold)
    clone = high & (max_scale <= percent_dense * extent)
    split = high & (max_scale > percent_dense * extent)
    request = clone | split

    # Allocation: requests ranked by decreasing statistic get the free slots in ascending slot order.
    free = ~active
    num_free = jnp.sum(free.astype(jnp.int32))
    priority = jnp.where(request, grads, -jnp.inf)
    order = jnp.argsort(-priority, stable=True)
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    granted = request & (rank < num_free)
    free_slots = jnp.nonzero(free, size=n, fill_value=0)[0]
    dest = jnp.where(granted, free_slots[jnp.minimum(rank, n - 1)], n)  # n = "no write" (dropped)
    split_ok = split & granted

    # Split children: x = μ + R (s ⊙ ε).
    k1, k2 = jax.random.split(key)
    rot = quaternion_to_rotation(g.quats)
    eps1 = jax.random.normal(k1, (n, 3), jnp.float32)
    eps2 = jax.random.normal(k2, (n, 3), jnp.float32)
    child1 = g.means + jnp.einsum("nij,nj->ni", rot, scales * eps1)
    child2 = g.means + jnp.einsum("nij,nj->ni", rot, scales * eps2)
    shrunk = g.log_scales - jnp.log(jnp.float32(split_scale_divisor))

    # Values written to the new slot of each granted request (clone: exact copy; split: second child).
    new_means = jnp.where(split[:, None], child2, g.means)
    new_log_scales = jnp.where(split[:, None], shrunk, g.log_scales)

    def scatter(field, values):
        return field.at[dest].set(values, mode="drop")

    # The parent slot of a granted split becomes the first child.
    means = jnp.where(split_ok[:, None], child1, g.means)
    log_scales = jnp.where(split_ok[:, None], shrunk, g.log_scales)
    g_new = g.replace(
        means=scatter(means, new_means),
        log_scales=scatter(log_scales, new_log_scales),
        quats=scatter(g.quats, g.quats),
        opacity_logits=scatter(g.opacity_logits, g.opacity_logits),
        sh_dc=scatter(g.sh_dc, g.sh_dc),
        sh_rest=scatter(g.sh_rest, g.sh_rest),
        active=scatter(active, jnp.ones_like(active)),
    )
    allocated = jnp.zeros((n,), bool).at[dest].set(True, mode="drop")

    # Prune on the densified set.
    opacity = jax.nn.sigmoid(g_new.opacity_logits)
    prune = g_new.active & (opacity < min_opacity)
    new_max_scale = jnp.max(jnp.exp(g_new.log_scales), axis=-1)
    radii = jnp.zeros_like(stats.max_radii) if reference_radii_reset else jnp.where(allocated, 0.0, stats.max_radii)
    big = (radii > max_screen_size) | (new_max_scale > max_world_size * extent)
    prune = prune | (g_new.active & big & jnp.asarray(prune_big))
    g_new = g_new.replace(active=g_new.active & ~prune)

    reset = allocated | split_ok | prune
    if opt_state is not None:
        opt_state = reset_slot_moments(opt_state, reset)
    info = {
        "cloned": jnp.sum((clone & granted).astype(jnp.int32)),
        "split": jnp.sum(split_ok.astype(jnp.int32)),
        "dropped": jnp.sum((request & ~granted).astype(jnp.int32)),
        "pruned": jnp.sum(prune.astype(jnp.int32)),
        "active": jnp.sum(g_new.active.astype(jnp.int32)),
    }
    return g_new, DensifyStats.zeros(n), opt_state, info


@jax.jit
def reset_opacity(g, opt_state, value=0.01):
    """INRIA ``reset_opacity``: opacity ← min(opacity, value) on active slots; opacity moments zeroed.

    Returns ``(g, opt_state)``. ``opt_state`` may be None.
    """
    value = jnp.asarray(value, jnp.float32)
    cap = jnp.log(value) - jnp.log1p(-value)
    logits = jnp.where(g.active, jnp.minimum(g.opacity_logits, cap), g.opacity_logits)
    if opt_state is not None:
        opt_state = reset_slot_moments(opt_state, jnp.ones((g.capacity,), bool), fields=("opacity_logits",))
    return g.replace(opacity_logits=logits), opt_state


def schedule(iteration: int, densify_config) -> dict:
    """Which density-control actions run after (1-based) ``iteration``, as INRIA ``train.py`` decides.

    Returns ``{"accumulate", "densify", "prune_big", "reset_opacity"}`` booleans:
    accumulate while iteration < stop; densify when additionally iteration > start and iteration % every == 0;
    prune_big when iteration > opacity_reset_every; reset_opacity when iteration < stop and
    iteration % opacity_reset_every == 0.
    """
    c = densify_config
    on = bool(c.enabled) and iteration < int(c.stop)
    return {
        "accumulate": on,
        "densify": on and iteration > int(c.start) and iteration % int(c.every) == 0,
        "prune_big": iteration > int(c.opacity_reset_every),
        "reset_opacity": on and iteration % int(c.opacity_reset_every) == 0,
    }


def split_children_scale_factor(split_samples: int = 2) -> float:
    """INRIA's split shrink factor 1 / (0.8·N) for N samples (1/1.6 for N = 2)."""
    return 1.0 / (0.8 * split_samples)


__all__ = [
    "DensifyStats",
    "accumulate_stats",
    "densify_and_prune",
    "ndc_grad_norm",
    "reset_opacity",
    "schedule",
    "split_children_scale_factor",
]
