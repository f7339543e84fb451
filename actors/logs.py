"""Log format shared by every process: one line per lifecycle step, with the
level, the logger and line, then the message (which names the task id).

Levels: our own loggers (`aipy.*`) at INFO, or DEBUG with `debug`
(--debug, AIPYTHON_DEBUG=1). The libraries' internals stay out of even a
debug log, since they drown our lines (Dramatiq alone writes several a
second per queue): the chatty ones below at WARNING, every other one at
INFO. `libraries` (--debug-all, AIPYTHON_DEBUG_LIBRARIES=1) lets every
logger write its debug lines too.
"""

import logging

FORMAT = "%(asctime)s | %(levelname)-8s | %(name)s:%(lineno)d - %(message)s"

#: The parent of every logger of ours.
OURS = "aipy"

#: Libraries whose INFO lines are their internals too (consumer restarts,
#: each HTTP request, each scheduler run).
CHATTY = ("dramatiq", "apscheduler", "httpx", "httpx2", "httpcore", "openai", "anthropic", "urllib3", "redis")


def setup_logging(debug: bool = False, libraries: bool = False) -> None:
    """Log to stderr in FORMAT; `debug` (default False) shows our debug
    lines, `libraries` (default False) every logger's."""
    logging.basicConfig(level=logging.DEBUG if libraries else logging.INFO, format=FORMAT, force=True)
    logging.getLogger(OURS).setLevel(logging.DEBUG if debug or libraries else logging.NOTSET)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if libraries else logging.WARNING)
