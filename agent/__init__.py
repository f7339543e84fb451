"""The AI engine: LLM providers, the code-block protocol, the sandboxed
executor and the round loop. It knows nothing of HTTP, queues or files."""

from .context import History, fit, task_turns
from .engine import Engine, EventSink, CancelProbe, Outcome
from .exec_result import ExecResult
from .executor import Executor, sandbox_for
from .limits import ExecLimits
from .providers import LLMError, Provider, make_provider
from .sandbox import Sandbox, SandboxUnavailable, protect_from_children
from .warm_kernels import WarmKernels
from config.models import EngineSettings, LLMSettings, ProviderSettings

EVENT_TYPES = ("task_start", "llm_response", "exec_start", "exec_result", "error", "task_end")

__all__ = [
    "EVENT_TYPES",
    "CancelProbe",
    "Engine",
    "EngineSettings",
    "EventSink",
    "ExecLimits",
    "ExecResult",
    "Executor",
    "History",
    "LLMError",
    "LLMSettings",
    "Outcome",
    "Provider",
    "ProviderSettings",
    "Sandbox",
    "SandboxUnavailable",
    "fit",
    "make_provider",
    "protect_from_children",
    "sandbox_for",
    "task_turns",
    "WarmKernels",
]
