"""Log format shared by every process: one line per lifecycle step, with the
level, the logger and line, then the message (which names the task id)."""

import logging

FORMAT = "%(asctime)s | %(levelname)-8s | %(name)s:%(lineno)d - %(message)s"


def setup_logging(debug: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=FORMAT, force=True)
    if not debug:
        # The SDKs' and Dramatiq's own chatter is only useful when debugging.
        for noisy in ("httpx", "httpx2", "httpcore", "openai", "anthropic", "dramatiq", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
