"""``python -m genxd_jax.curate INPUT OUT_DIR [...]``: see :mod:`genxd_jax.curation.cli`."""

from __future__ import annotations

import sys

from genxd_jax.curation.cli import main

if __name__ == "__main__":
    sys.exit(main())
