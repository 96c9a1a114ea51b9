"""``python -m wsgilab.swarm``: what ``scripts/swarm`` runs."""

import sys

from wsgilab.swarm.cli import main

sys.exit(main())
