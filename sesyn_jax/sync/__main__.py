"""``python -m sesyn_jax.sync`` runs the ``sesyn-sync`` command."""

import sys

from sesyn_jax.sync.cli import main

sys.exit(main())
