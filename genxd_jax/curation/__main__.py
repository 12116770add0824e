import sys

from genxd_jax.curation.cli import main

sys.exit(main())
