"""What the `worker` and `clock` processes do first: read the configuration,
set up logging and build the task system, or say what is wrong and exit 2."""

from __future__ import annotations

import sys

from config import ConfigError, load_config

from .logs import setup_logging
from .system import TaskSystem


def system_from_config() -> TaskSystem:
    """The task system of this process; SystemExit(2) on a configuration error."""
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.settings.debug)
    return TaskSystem(config)
