"""Dramatiq: the job pipeline and the processes that run it. What the HTTP
edge uses is named here; the rest is this package's own."""

from .callbacks import check_callback_url
from .logs import setup_logging
from .pipeline import BrokerUnavailable
from .system import TaskSystem

__all__ = ["BrokerUnavailable", "TaskSystem", "check_callback_url", "setup_logging"]
