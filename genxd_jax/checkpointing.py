"""Orbax checkpoints of a training run: train state + grain data-iterator state + config, and SIGTERM saves.

Layout: ``<workdir>/checkpoints/<step>/{state, data_iter, config}``. The train state is any pytree of
(sharded) jax arrays (the dict of `genxd_jax.train_step`); it is restored onto the shardings of an
abstract target (`genxd_jax.train_step.abstract_train_state`, ``jax.ShapeDtypeStruct`` leaves carrying
``sharding``), so a run resumes on the same or on a different mesh.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading

import grain
import orbax.checkpoint as ocp


def make_manager(workdir: str, *, keep: int = 3, asynchronous: bool = True) -> ocp.CheckpointManager:
    """An Orbax CheckpointManager under ``<workdir>/checkpoints`` keeping the latest ``keep`` steps."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=asynchronous,
                                           create=True)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
                                 item_names=("state", "data_iter", "config"))


def save(manager: ocp.CheckpointManager, step: int, state, data_iter, config=None, *, force: bool = False):
    """Saves (asynchronously) the state, the data iterator position and the config JSON at ``step``."""
    items = dict(state=ocp.args.StandardSave(state), data_iter=grain.checkpoint.CheckpointSave(data_iter))
    if config is not None:
        items["config"] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
    saved = manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
        logging.info("checkpoint: saving step %d to %s", step, manager.directory)
    return saved


def restore(manager: ocp.CheckpointManager, abstract_state, data_iter, step: int | None = None):
    """Restores ``(step, state)`` (and the iterator in place) from ``step`` or the latest; None if empty."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    if data_iter is not None:
        items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    logging.info("checkpoint: restored step %d from %s", step, manager.directory)
    return step, restored["state"]


def restore_item(workdir: str, item: str, abstract, step: int | None = None):
    """One item of the train state (``"params"``, ``"ema"``, ...) from a run's latest (or given) checkpoint,
    restored onto ``abstract``'s shardings; nothing else of that run's state is read. Returns (tree, step)."""
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                                    item_names=("state",))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {directory}")
        target = {item: abstract}
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        args = ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True)
        restored = manager.restore(step, args=ocp.args.Composite(state=args))
    finally:
        manager.close()
    logging.info("checkpoint: read the %s of step %d from %s", item, step, directory)
    return restored["state"][item], step


def restore_params(workdir: str, abstract_params, step: int | None = None):
    """The ``params`` of another run's latest (or given) checkpoint (``init.source = workdir:<dir>``)."""
    return restore_item(workdir, "params", abstract_params, step)[0]


class PreemptionFlag:
    """Sets ``.requested`` on SIGTERM (and SIGINT if asked); the train loop saves at the next step boundary.

    Installs handlers only from the main thread (signal handlers cannot be set elsewhere) and only when
    ``install``: multi-process runs leave SIGTERM to JAX's preemption notifier, which the loop polls through
    ``CheckpointManager.reached_preemption`` so that every process stops at the same step. ``restore()`` puts
    the previous handlers back.
    """

    def __init__(self, signals=(signal.SIGTERM,), *, install: bool = True):
        self.requested = False
        self._previous = {}
        if install and threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):  # noqa: ARG002
        logging.warning("signal %d received: saving a checkpoint at the next step boundary, then exiting", signum)
        self.requested = True

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
