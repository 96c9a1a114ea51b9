"""``python -m wsgilab.hoptrace``: the same as the ``hoptrace`` command."""

import sys

from wsgilab.hoptrace.cli import main

sys.exit(main())
