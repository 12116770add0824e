"""Training entry point.

    python -m genxd_jax.main --config=configs/stage3.py:tiny --workdir=/tmp/genxd_tiny
    python -m genxd_jax.main --config=configs/stage1.py:full --workdir=DIR --config.optimizer.learning_rate=1e-5

Multi-process: launch/README.md (GENXD_COORDINATOR_ADDRESS / GENXD_NUM_PROCESSES / GENXD_PROCESS_ID, or
SLURM / TPU auto-detection).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")


def initialize_distributed() -> None:
    """Joins a multi-process JAX run when one is configured; a plain single host is left alone."""
    import jax

    if "GENXD_NUM_PROCESSES" in os.environ:
        jax.distributed.initialize(
            coordinator_address=os.environ["GENXD_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["GENXD_NUM_PROCESSES"]),
            process_id=int(os.environ["GENXD_PROCESS_ID"]),
        )
        return
    if "SLURM_JOB_ID" in os.environ or "TPU_WORKER_HOSTNAMES" in os.environ or os.path.exists("/dev/accel0"):
        try:
            jax.distributed.initialize()
        except (ValueError, RuntimeError) as e:
            logging.info("jax.distributed.initialize() skipped: %s", e)


def quiet_library_logs() -> None:
    """Orbax logs every checkpoint file operation at INFO through absl; keep only its warnings."""
    import logging as std_logging

    def keep(record) -> bool:
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname

    logging.get_absl_handler().addFilter(keep)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from genxd_jax import train

    config = _CONFIG.value
    quiet_library_logs()
    initialize_distributed()  # first: it must run before anything touches the JAX backend
    try:
        train.validate_config(config)
    except train.ConfigError as e:  # before any model is built or compiled: a one-line error
        logging.error("%s", e)
        sys.exit(f"invalid config: {e}")
    result = train.train_and_evaluate(config, _WORKDIR.value)
    logging.info("done: step %d, %d skipped steps, preempted=%s", result["final_step"], result["skipped_steps"],
                 result["preempted"])


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
