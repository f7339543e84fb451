"""The boundary around LLM-written code: tiers, identities and their choice.

`choose_sandbox` picks the tier at start (after a self-test); a `Sandbox`
wraps each block's command and opens one `Session` per task, which leases
the task's uid and hands it the workspace. The executor spawns
(../exec_session.py), watches and kills (../block_watch.py) the blocks.
`protect_from_children` keeps the server's own memory from code that runs
as its user.
"""

from .identity import NoFreeUid, UidPool, kill_all_of
from .protection import protect_from_children
from .sandbox import TIERS, Sandbox, Session
from .selection import SandboxUnavailable, choose_sandbox

__all__ = ["TIERS", "NoFreeUid", "Sandbox", "SandboxUnavailable", "Session", "UidPool", "choose_sandbox",
           "kill_all_of", "protect_from_children"]
