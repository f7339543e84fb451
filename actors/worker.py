"""Entry point of the `worker` process: `dramatiq actors.worker:broker`.

Dramatiq's command line imports this module, finds `broker` and consumes the
task queues with its own processes and threads. The configuration (REDIS_URL,
data folder, LLM...) comes from the environment and the config directory.
"""

import dramatiq

from agent.executor import protect_from_children
from config import load_config

from .logs import setup_logging
from .system import TaskSystem

_config = load_config()
setup_logging(_config.settings.debug)
system = TaskSystem(_config)
protect_from_children()  # this process runs model-written code
# Before any task: pick the sandbox (a tier that cannot run code fails the
# start) and kill what a killed worker's tasks left running.
system.engines.sandbox()
broker = system.broker
dramatiq.set_broker(broker)
