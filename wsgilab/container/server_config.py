"""A server's settings from a config file that is Python, read the way gunicorn reads gunicorn.conf.py.

Granian and Waitress have no config file of their own; granian.conf.py and
waitress.conf.py are Python files whose public names are the server's own
arguments (granian_main, waitress_main).
"""

from __future__ import annotations

import runpy
import types
from typing import Any


def public_names(config: str) -> dict[str, Any]:
    """What the file at ``config`` sets: its names not starting with "_", modules and classes it imported left out."""
    return {name: value for name, value in runpy.run_path(config).items()
            if not name.startswith("_") and not isinstance(value, (type, types.ModuleType))}
