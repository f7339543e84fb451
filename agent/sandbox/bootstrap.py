"""The first code that runs in a block's process, before any of the model's.

It is passed to the interpreter with `-c` (see `bootstrap_argv`) rather than
done with `preexec_fn`, which is unsafe in a threaded server and disables
subprocess's fast spawn path. In this order it:

1. sets the resource limits (exact for shells too: no `ulimit` dialects);
2. drops to the task's uid when started as root (the bubblewrap tier as
   root starts it as root, inside the sandbox, so that the mounts could be
   made), with no supplementary groups, enters the workspace as that uid,
   sets umask 077 (what it writes in a shared /tmp is its own alone) and
   no_new_privs, so no setuid program can give privileges back;
3. writes b"1" to the ready pipe: from here on a failure is the code's own;
   a process that exits before it failed to *start*, and the task is failed
   rather than the model shown a confusing error (see exec_session.py);
4. runs the block: Python code in this interpreter, in isolated mode (`-I`:
   no PYTHON* variables, no user site-packages, no script folder on the
   path), or `execv` of the shell. If that exec fails, b"!" and the reason
   follow on the ready pipe. Mode "kernel" runs the kernel program at `file`
   instead (../kernel_program.py), which then runs block after block given
   on the `control` fd, in the main module's namespace.

Frames of the bootstrap (file "<string>") are cut from tracebacks, so the
model sees only its own code, as with `python file.py`.
"""

from __future__ import annotations

import json

#: Resource limits a block gets, by name in the `resource` module.
LIMIT_NAMES = ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_CORE")

_SOURCE = """\
def _aipy_boot():
    import json, os, signal, sys, resource as R
    spec = json.loads(sys.argv[1])
    ready = spec["ready"]
    for name, value in spec["limits"]:
        kind = getattr(R, name)
        hard = R.getrlimit(kind)[1]
        if hard != R.RLIM_INFINITY and os.geteuid() != 0:
            value = min(value, hard)
        R.setrlimit(kind, (value, value))
    uid = spec["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.umask(0o077)
    os.chdir(spec["cwd"])
    if spec["no_new_privs"]:
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:
            raise SystemExit("bootstrap: prctl(PR_SET_NO_NEW_PRIVS) failed")
    mode, path = spec["mode"], spec["file"]
    if mode not in ("python", "kernel"):
        for s in ("SIGPIPE", "SIGXFSZ"):
            signal.signal(getattr(signal, s), signal.SIG_DFL)
        os.set_inheritable(ready, False)
        os.write(ready, b"1")
        try:
            os.execv(mode, [mode, path])
        except OSError as exc:
            os.write(ready, ("!cannot run %s: %s" % (mode, exc.strerror)).encode())
            os._exit(127)
    os.write(ready, b"1")
    os.close(ready)
    g = sys.modules["__main__"].__dict__
    if mode == "kernel":
        with open(path, "rb") as fh:
            kernel = compile(fh.read(), "<aipy-kernel>", "exec", dont_inherit=True)
        del g["_aipy_boot"]
        own = {"__name__": "aipy_kernel", "__builtins__": __builtins__}
        exec(kernel, own)
        own["serve"](spec["control"], g)
        return
    sys.path.insert(0, spec["path0"])
    sys.argv[:] = [path]
    def hook(t, e, tb, _h=sys.__excepthook__):
        while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        _h(t, e.with_traceback(tb) if isinstance(e, BaseException) else e, tb)
    sys.excepthook = hook
    g["__file__"] = path
    with open(path, "rb") as fh:
        code = compile(fh.read(), path, "exec")
    del g["_aipy_boot"]
    exec(code, g)
_aipy_boot()
"""


def bootstrap_argv(python: str, *, mode: str, script: str, path0: str, cwd: str, limits: dict[str, int],
                   uid: int | None, ready_fd: int, control_fd: int | None = None) -> list[str]:
    """The command that starts a block. `mode` is "python", "kernel" (then
    `script` is the kernel program and `control_fd` its socket) or the path
    of a shell to exec; `limits` maps names of LIMIT_NAMES to values (-1
    means unlimited); `uid` is the uid to drop to (None: stay as started);
    `cwd` is entered after the drop."""
    spec = {
        "limits": [[name, int(value)] for name, value in limits.items()],
        "uid": uid,
        # Set whenever the process could otherwise regain privileges through
        # a setuid program: always, it costs one call.
        "no_new_privs": True,
        "mode": mode,
        "file": script,
        "path0": path0,
        "cwd": cwd,
        "ready": ready_fd,
        "control": control_fd,
    }
    # -I: isolated; -B: no .pyc written into the workspace; -u: output
    # reaches the server as it is written; -X utf8: text is UTF-8 whatever
    # the locale. -S for shells: the bootstrap needs no site-packages.
    flags = ["-I", "-B", "-u", "-X", "utf8"] if mode in ("python", "kernel") else ["-I", "-S"]
    return [python, *flags, "-c", _SOURCE, json.dumps(spec)]

