"""The Python kernel: one interpreter that runs every Python block of a task.

The service never imports this file. Its source is written into the task's
scratch folder and run by the sandbox's bootstrap (sandbox/bootstrap.py, mode
"kernel") once the boundary is up, as the task's uid, so it uses the standard
library only (whatever Python `engine.python` is), and only modules that cost
little to import: a task's first block waits for them.

The protocol (agent/kernel.py is the other end) runs on a Unix stream socket,
fd `control`, one JSON object per line; the block's stdin stays /dev/null:

- kernel -> server, once, when ready: {"pid": its pid in its pid namespace};
- server -> kernel, per block: {"block": n, "file": path, "path0": folder,
  "cwd": workspace, "cpu_s": seconds, "value_cap": bytes, and in the first
  block's only, "home": the workspace for $HOME}, with two fds
  attached (SCM_RIGHTS): the write ends of the block's stdout and stderr;
- kernel -> server, when the block is over: {"block": n, "exit": status,
  "value": repr of a final bare expression or null, "value_bytes": the
  repr's whole size in UTF-8 (the value is cut to value_cap bytes)};
- server -> kernel: {"stop": true}: leave as a script's end does (threads
  joined, atexit handlers run, open files flushed; see _leave); end of file
  on `control`: leave at once.

A block runs in the main module's namespace (`__name__ == "__main__"`, the
block's `__file__` and `sys.argv`), starting in the workspace, with fresh
stdin/stdout/stderr; its exception is printed as `python file.py` would,
without this program's frames. `sys.exit(n)` ends the block with status n
and the kernel lives on. Between blocks fds 1 and 2 are /dev/null, so
nothing a block left behind can write into the next block's output.
"""

import _ast
import _io
import _socket
import array
import importlib
import json
import os
import resource
import sys

#: Frames of the bootstrap and of this program, cut from the model's tracebacks.
OWN_FILES = ("<string>", "<aipy-kernel>")


def serve(control_fd, main):
    """Answer the server's requests on `control_fd` until it says stop,
    running each block in `main`, the main module's namespace."""
    control = _socket.socket(fileno=control_fd)
    os.set_inheritable(control_fd, False)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    me = os.getpid()
    place = {"path0": None}
    _send(control, {"pid": me})
    pending = b""
    while True:
        request, fds, pending = _receive(control, pending)
        if request is None:
            os._exit(0)  # the server is gone
        if request.get("stop"):
            # The socket stays open: it closes as the process exits, so the
            # server's wait for end of file waits for all of _leave.
            control.detach()
            _leave()
        if len(fds) != 2:
            os._exit(1)  # no room for the block's streams (the code used up its open files)
        status, value = _run_block(request, fds, main, devnull, place)
        if os.getpid() != me:
            os._exit(status)  # a fork of the kernel ran on to the block's end
        try:
            _send(control, dict(value, block=request["block"], exit=status))
        except OSError:
            os._exit(status)  # the code closed our end, or the server left


def _leave():
    """End as the task's script would end, without the interpreter's own
    teardown of every module (which takes longer than a quick block): wait
    for the threads the code left that are not daemons, run the atexit
    handlers (weakref finalizers among them), flush every open file; then
    exit at once."""
    threading = sys.modules.get("threading")
    if threading is not None and hasattr(threading, "_shutdown"):
        try:
            threading._shutdown()
        except BaseException:
            pass
    try:
        import atexit
        atexit._run_exitfuncs()
    except BaseException:
        pass
    import gc
    for thing in gc.get_objects():
        if isinstance(thing, _io._IOBase):  # the C base of every file: io.IOBase is an ABC, slow to test
            try:
                if not thing.closed:
                    thing.flush()
            except BaseException:  # a file of the code's that cannot flush: as at exit, it is lost
                pass
    os._exit(0)


def _send(control, message):
    control.sendall(json.dumps(message).encode() + b"\n")


def _receive(control, pending):
    """The next request and the fds sent with it; (None, [], b"") at end of file."""
    fds = []
    while b"\n" not in pending:
        try:
            data, ancillary, _, _ = control.recvmsg(1 << 16, _socket.CMSG_SPACE(2 * 4))
        except OSError:
            return None, [], b""
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[:len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not data:
            return None, [], b""
        pending += data
    line, _, pending = pending.partition(b"\n")
    return json.loads(line), fds, pending


def _run_block(request, fds, main, devnull, place):
    """Run one block with the streams `fds`; its exit status and value."""
    os.dup2(devnull, 0)
    for target, fd in zip((1, 2), fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    _reset_streams()
    _cpu_backstop(request["cpu_s"])
    status, value = 0, {"value": None, "value_bytes": 0}
    try:
        _enter(request, main, place)
        value = _capped_repr(_execute(request["file"], main), request["value_cap"])
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:
        status = 1
        _print_exception(exc)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # closed or replaced by the code: nothing left to flush
            pass
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return status, value


def _reset_streams():
    """The standard streams the interpreter made, on this block's fds: a
    block that replaced or closed them must not lose the next one's output."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, "__%s__" % name)
        if stream is None or stream.closed:
            errors = "backslashreplace" if fd == 2 else "surrogateescape"
            stream = open(fd, "w", encoding="utf-8", errors=errors, closefd=False)
            stream.reconfigure(write_through=True)
            setattr(sys, "__%s__" % name, stream)
        setattr(sys, name, stream)
    sys.stdin = sys.__stdin__


def _cpu_backstop(seconds):
    """Allow this block `seconds` of CPU beyond what the kernel used so far:
    the kernel lives for the task, so one fixed limit would add up its blocks."""
    kind = resource.RLIMIT_CPU
    hard = resource.getrlimit(kind)[1]
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime) + 1 + int(seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(kind, (soft, hard))
    except (OSError, ValueError):  # the code lowered the hard limit itself
        pass


def _enter(request, main, place):
    """What a script started as `python file` sees: its file, argv, folder
    first on sys.path, the workspace as the current folder."""
    path = request["file"]
    main["__file__"] = path
    sys.argv = [path]
    if sys.path and place["path0"] is not None and sys.path[0] == place["path0"]:
        sys.path[0] = request["path0"]
    else:
        sys.path.insert(0, request["path0"])
    place["path0"] = request["path0"]
    if "home" in request:  # the first block's: a kernel started ahead of its task learns its folder
        os.environ["HOME"] = request["home"]
    os.chdir(request["cwd"])
    # Modules written by an earlier block (or this one) must be found now:
    # the path finders cache folder listings.
    importlib.invalidate_caches()


def _execute(path, main):
    """Run the file's code in `main`; the value of its last statement when
    that is a bare expression, as a notebook shows it, else None."""
    with open(path, "rb") as fh:
        source = fh.read()
    tree = compile(source, path, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    tail = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        tail = _ast.Expression(tree.body.pop().value)
    exec(compile(tree, path, "exec", dont_inherit=True), main)
    if tail is None:
        return None
    return eval(compile(tail, path, "eval", dont_inherit=True), main)


def _capped_repr(value, cap):
    if value is None:
        return {"value": None, "value_bytes": 0}
    data = repr(value).encode("utf-8", "backslashreplace")
    return {"value": data[:cap].decode("utf-8", "ignore"), "value_bytes": len(data)}


def _exit_status(exc):
    """The status `python file` would exit with for this SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _print_exception(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in OWN_FILES:
        tb = tb.tb_next
    exc = exc.with_traceback(tb)  # what Python prints, whatever tb it is given
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:  # a hook the code installed failed: Python's own
        sys.__excepthook__(type(exc), exc, tb)
