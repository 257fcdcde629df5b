"""Child-side bootstrap of `simulators.code_sandbox`. Standard library only; never imported by the parent.

Run as `python -I -S -B _code_runner.py INPUT_JSON RESULT_FD` inside the fresh working directory:

1. read the job (solution, tests, limits, nonce) from INPUT_JSON and delete it, so the solution cannot
   read the tests;
2. set resource limits (address space, CPU seconds, file size, open files, processes, core dumps),
   optionally drop to an unprivileged uid, and install an audit hook that refuses sockets, new
   processes, ctypes, signals to other processes and file writes outside the working directory
   (audit hooks cannot be removed once added);
3. run the solution as module `solution`, then each test in its own copy of that namespace, under
   a wall-clock alarm; a failing test does not stop the others;
4. stream one JSON line per event to RESULT_FD (an fd the parent passed, not a path in the working
   directory), each carrying the job's nonce: `solution`, `test` (one per test) and finally `done`.

User `print`s go to the real stdout/stderr, which the parent captures (and truncates).
This layer is best effort against hostile code in the same interpreter; the kernel layers the parent
adds (network namespace, resource limits, unprivileged uid when available) are the hard boundary.
"""

import ast
import io
import json
import linecache
import os
import resource
import signal
import stat
import subprocess  # imported before the hook so that merely importing it works; spawning is refused
import sys
import traceback
import types
from collections.abc import Callable
from contextlib import suppress
from typing import Any

MESSAGE_LIMIT = 600
DENIED_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "socket.sendto",
        "socket.sendmsg",
        "socket.sethostname",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "os.symlink",
        "signal.pthread_kill",
        "resource.setrlimit",
        "resource.prlimit",
        "sys.addaudithook",
        "fcntl.ioctl",
        "webbrowser.open",
    }
)
DENIED_PREFIXES = ("ctypes.", "syslog.", "winreg.", "_winapi.")
DENIED_IMPORTS = frozenset(
    {"_posixsubprocess", "_ctypes", "ctypes", "_testcapi", "_testinternalcapi", "_testmultiphase", "_xxsubinterpreters"}
)
# event -> indexes of its path arguments that must lie inside the working directory
WRITE_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "shutil.chown": (0,),
    "shutil.unpack_archive": (1,),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
READ_ROOTS = ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/share", "/lib", "/lib64", "/etc/localtime")
DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})


class SandboxTimeout(BaseException):
    """Raised by the alarm: the job's wall-clock budget is spent."""


class Policy:
    """What the audit hook allows. Functions are bound at construction, before user code runs."""

    def __init__(self, workdir: str, extra_read_roots: list[str]) -> None:
        self.realpath = os.path.realpath
        self.join = os.path.join
        self.getcwd = os.getcwd
        self.readlink = os.readlink
        self.stat = os.stat
        self.fspath = os.fspath
        self.fsdecode = os.fsdecode
        self.workdir = self.realpath(workdir)
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        roots = {self.realpath(p) for p in (*READ_ROOTS, *prefixes, *extra_read_roots) if p}
        roots.add(f"/proc/{os.getpid()}")
        self.read_roots = tuple(sorted(roots))

    def inside(self, path: str, root: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")

    def resolve(self, path: object, *, write: bool) -> str | None:
        """The real absolute path `path` names, or None when it cannot be judged (then: refuse)."""
        if isinstance(path, int):
            try:
                return self.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return None
        try:
            text = self.fsdecode(self.fspath(path))  # type: ignore[call-overload]
        except TypeError:
            return None
        if write and not text.startswith("/") and ".." in text.split("/"):
            return None  # relative to an unknown dir_fd, perhaps: be conservative
        return self.realpath(self.join(self.getcwd(), text))

    def check_write(self, event: str, path: object) -> None:
        resolved = self.resolve(path, write=True)
        if resolved is None or not self.inside(resolved, self.workdir):
            raise PermissionError(f"sandbox: {event} outside the working directory is not allowed: {path!r}")

    def check_open(self, path: object, mode: object, flags: object) -> None:
        if path is None:
            return
        writing = (isinstance(flags, int) and flags & WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        )
        if isinstance(path, int) and path in (0, 1, 2):
            return
        if writing:
            if path in DEVICES:
                return
            self.check_write("open", path)
            return
        if isinstance(path, int):
            return  # reading an fd the process already holds
        resolved = self.resolve(path, write=False)
        if resolved is None:
            raise PermissionError(f"sandbox: reading {path!r} is not allowed")
        in_workdir = self.inside(resolved, self.workdir)
        readable = in_workdir or resolved in DEVICES or any(self.inside(resolved, r) for r in self.read_roots)
        if not readable:
            raise PermissionError(f"sandbox: reading {path!r} is not allowed")
        try:
            mode_bits = self.stat(resolved).st_mode
        except OSError:
            return  # the open itself will fail
        if (stat.S_ISCHR(mode_bits) or stat.S_ISBLK(mode_bits)) and resolved not in DEVICES:
            raise PermissionError(f"sandbox: opening device {path!r} is not allowed")
        if stat.S_ISDIR(mode_bits) and not in_workdir:
            raise PermissionError(f"sandbox: opening directory {path!r} is not allowed")

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if event in DENIED_EVENTS or event.startswith(DENIED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            self.check_open(*args[:3])
        elif event == "import":
            name = str(args[0])
            if name in DENIED_IMPORTS or name.split(".")[0] in DENIED_IMPORTS:
                raise PermissionError(f"sandbox: importing {name} is not allowed")
        elif event in WRITE_EVENTS:
            for index in WRITE_EVENTS[event]:
                if index < len(args):
                    self.check_write(event, args[index])


class Emitter:
    """Writes one JSON line per event to the result fd, with the signals blocked meanwhile."""

    def __init__(self, fd: int, nonce: str) -> None:
        self.fd = fd
        self.nonce = nonce
        self.dumps = json.dumps
        self.write = os.write

    def __call__(self, kind: str, **fields: object) -> None:
        data = self.dumps({"nonce": self.nonce, "kind": kind, **fields}).encode() + b"\n"
        while data:
            data = data[self.write(self.fd, data) :]


ALARM_SIGNALS = {signal.SIGALRM, signal.SIGXCPU}
state = {"expired": False}
USER_FILES: set[str] = set()


def _on_alarm(signum: int, frame: Any) -> None:
    state["expired"] = True
    raise SandboxTimeout


def guarded(fn: Callable[[], Any]) -> Any:
    """Run user code with the time-limit signals deliverable; they stay blocked in the bootstrap."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, ALARM_SIGNALS)
    try:
        return fn()
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, ALARM_SIGNALS)


def describe(exc: BaseException) -> str:
    try:
        if isinstance(exc, SyntaxError):
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        else:
            where = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in USER_FILES]
            line = f" (line {where[-1].lineno} of {where[-1].filename})" if where else ""
            text = f"{type(exc).__name__}: {guarded(lambda: str(exc))}{line}"
    except BaseException:
        text = f"{type(exc).__name__}: <unprintable>"
    return text[:MESSAGE_LIMIT]


def short_repr(value: object) -> str:
    try:
        text = str(guarded(lambda: repr(value)))
    except BaseException:
        text = "<unrepresentable>"
    return text if len(text) <= 200 else text[:197] + "..."


def compile_user(source: str, filename: str, mode: str = "exec") -> types.CodeType:
    USER_FILES.add(filename)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return compile(source, filename, mode, dont_inherit=True)


def equality_assert(source: str, filename: str) -> tuple[types.CodeType, types.CodeType] | None:
    """(left, right) code objects when `source` is exactly `assert LEFT == RIGHT`, for a helpful message."""
    tree = ast.parse(source, filename)
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert) or tree.body[0].msg is not None:
        return None
    test = tree.body[0].test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    USER_FILES.add(filename)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    left = compile(ast.Expression(test.left), filename, "eval", dont_inherit=True)
    right = compile(ast.Expression(test.comparators[0]), filename, "eval", dont_inherit=True)
    return left, right


def run_test(source: str, filename: str, module: types.ModuleType) -> tuple[bool, str]:
    namespace = dict(module.__dict__)
    try:
        pair = equality_assert(source, filename)
    except SyntaxError as exc:
        return False, "test does not compile: " + describe(exc)
    if pair is not None:
        left_code, right_code = pair
        values: list[object] = []

        def compare() -> bool:
            values.append(eval(left_code, namespace))
            values.append(eval(right_code, namespace))
            return bool(values[0] == values[1])

        if guarded(compare):
            return True, ""
        first = source.strip().splitlines()[0]
        return False, f"{first[:200]} -- got {short_repr(values[0])}, expected {short_repr(values[1])}"
    code = compile_user(source, filename)
    guarded(lambda: exec(code, namespace))
    return True, ""


def set_limits(job: dict[str, Any]) -> None:
    mb = 1 << 20
    cpu = int(job["cpu_limit_s"])
    limits: list[tuple[int, int | tuple[int, int]]] = [
        (resource.RLIMIT_AS, int(job["memory_limit_mb"]) * mb),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, int(job["file_size_limit_mb"]) * mb),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_NPROC, 64),
        (resource.RLIMIT_CORE, 0),
    ]
    for kind, value in limits:
        soft, hard = value if isinstance(value, tuple) else (value, value)
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(kind, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError("could not drop privileges")


def strip_fork_primitives() -> None:
    posixsubprocess = sys.modules.get("_posixsubprocess")
    if posixsubprocess is not None and hasattr(posixsubprocess, "fork_exec"):
        del posixsubprocess.fork_exec
    subprocess._fork_exec = None  # type: ignore[attr-defined]


def main() -> None:
    input_name, result_fd = sys.argv[1], int(sys.argv[2])
    with open(input_name, encoding="utf-8") as fh:
        job = json.load(fh)
    os.unlink(input_name)
    emit = Emitter(result_fd, job["nonce"])
    tests: list[list[str]] = job["tests"]
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)

    signal.pthread_sigmask(signal.SIG_BLOCK, ALARM_SIGNALS)
    for signum in ALARM_SIGNALS:
        signal.signal(signum, _on_alarm)
    set_limits(job)
    if job.get("drop_to"):
        drop_privileges(*job["drop_to"])
    os.umask(0o077)
    strip_fork_primitives()
    if job.get("audit_hook", True):
        sys.addaudithook(Policy(os.getcwd(), list(job.get("read_roots", []))))
    reserve: bytearray | None = bytearray(2 << 20)  # freed on MemoryError so reporting still works
    signal.setitimer(signal.ITIMER_REAL, float(job["time_limit_s"]))
    emit("ready", pid=os.getpid(), uid=os.getuid())

    module = types.ModuleType("solution")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["solution"] = module
    solution_ok = False
    flags: dict[str, bool] = {"timed_out": False, "memory_exceeded": False}
    try:
        code = compile_user(job["code"], "<solution>")
        guarded(lambda: exec(code, module.__dict__))
        solution_ok = True
        error = None
    except SandboxTimeout:
        flags["timed_out"] = True
        error = f"time limit exceeded ({job['time_limit_s']} s) while running the solution"
    except MemoryError:
        reserve = None
        module.__dict__.clear()
        flags["memory_exceeded"] = True
        error = f"memory limit exceeded ({job['memory_limit_mb']} MB) while running the solution"
    except BaseException as exc:
        error = "solution failed: " + describe(exc)
    emit("solution", ok=solution_ok, error=error, **flags)

    for index, (name, source) in enumerate(tests):
        flags = {"timed_out": False, "memory_exceeded": False}
        if not solution_ok:
            passed, message = False, "not run: the solution failed"
        elif state["expired"]:
            passed, message = False, "not run: time limit exceeded"
        else:
            try:
                passed, message = run_test(source, f"<{name}>", module)
            except SandboxTimeout:
                flags["timed_out"] = True
                passed, message = False, f"time limit exceeded ({job['time_limit_s']} s)"
            except MemoryError:
                reserve = None
                flags["memory_exceeded"] = True
                passed, message = False, f"memory limit exceeded ({job['memory_limit_mb']} MB)"
            except BaseException as exc:
                passed, message = False, describe(exc)
        emit("test", index=index, name=name, passed=passed, message=message[:MESSAGE_LIMIT], **flags)
        if reserve is None:
            with suppress(MemoryError):
                reserve = bytearray(2 << 20)

    signal.setitimer(signal.ITIMER_REAL, 0)
    emit("done")
    for stream in (sys.stdout, sys.stderr):
        with suppress(BaseException):
            stream.flush()
    os._exit(0)  # skip atexit handlers and finalizers the solution may have registered


if __name__ == "__main__":
    main()
