"""Run model-written Python in a locked-down child process; test pass rates are the ground truth.

`run_code(code, tests)` runs a solution and then each test snippet (e.g. `"assert add(1, 2) == 3"`)
against the solution's namespace, one by one, in a separate process, and returns a `CodeResult`.
`CodeSandbox` does the same with its limits and its isolation probes cached, and exposes the
`run_python` tool for agents (`tools()` / `call()`, the `simulators.sandboxes` conventions).

Isolation layers, outermost first (`CodeSandbox.isolation()` says which ones are active here):

- a separate interpreter (`python -I -S -B`: no environment variables, no user site, no site-packages
  unless asked), in its own session (the whole process group is killed on timeout), with an empty
  environment apart from locale, HOME and TMPDIR (so no API keys), stdin from /dev/null, in a fresh
  temporary working directory that is deleted afterwards;
- `unshare --net` when it works here (probed once per sandbox): a network namespace without routes;
- an unprivileged uid (nobody) when the parent is root and the interpreter is readable by it (probed);
- resource limits set by the child before user code: RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE,
  RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_CORE; a wall-clock alarm in the child and a kill from the parent;
- an audit hook (`simulators/_code_runner.py`) refusing sockets (also Unix ones, which a network
  namespace does not stop), processes, ctypes, signals to other processes, writes outside the working
  directory and reads outside it, the Python installation and a few system paths.

The audit hook is defence in depth, not a boundary against code that attacks the interpreter itself;
a solution can also game its own tests (they run in its process). Good enough for data synthesis
with model-written code; use a VM or gVisor for adversarial code.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import jsonschema

from synth.records import ToolCall, ToolSpec, content_id

RUNNER = Path(__file__).with_name("_code_runner.py")
OUTPUT_LIMIT = 4096
TOOL_NAME = "run_python"
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory")


class CaseResult(NamedTuple):
    """One test's outcome: `(name, passed, message)`; the message says why a test failed."""

    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class CodeResult:
    """What a run produced. `pass_rate` is `passed / total` (0.0 without tests)."""

    passed: int
    failed: int
    total: int
    pass_rate: float
    timed_out: bool = False
    memory_exceeded: bool = False
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    tests: tuple[CaseResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """The solution ran within its limits and every test passed."""
        return self.error is None and not self.timed_out and not self.memory_exceeded and self.failed == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tests"] = [case._asdict() for case in self.tests]
        return data


def split_tests(tests: Sequence[str] | str) -> list[tuple[str, str]]:
    """`(name, source)` per test. A list holds one snippet per test (`test_1`, `test_2`, ...).

    A string is a test module: each top-level `assert` is a test (run after the statements before it),
    and each top-level `def test_*()` is a test (run after all the other statements, as pytest would).
    A string that does not parse, or holds neither, is one test.
    """
    if not isinstance(tests, str):
        return [(f"test_{i}", source) for i, source in enumerate(tests, start=1)]
    try:
        tree = ast.parse(tests)
    except SyntaxError:
        return [("test_1", tests)]
    lines = tests.splitlines(keepends=True)

    def segment(node: ast.stmt) -> str:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return "".join(lines[start - 1 : node.end_lineno]).rstrip("\n") + "\n"

    def is_test_function(node: ast.stmt) -> bool:
        return isinstance(node, ast.FunctionDef) and node.name.startswith("test") and not node.args.args

    setup_all = "".join(segment(n) for n in tree.body if not isinstance(n, ast.Assert) and not is_test_function(n))
    cases: list[tuple[str, str]] = []
    setup_so_far: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            cases.append((f"test_{len(cases) + 1}", "".join(setup_so_far) + segment(node)))
        elif is_test_function(node):
            name = node.name  # type: ignore[attr-defined]
            cases.append((name, setup_all + segment(node) + f"{name}()\n"))
        else:
            setup_so_far.append(segment(node))
    return cases or [("test_1", tests)]


class CodeSandbox:
    """Runs code with fixed limits; the isolation probes run once per sandbox and are cached."""

    def __init__(
        self,
        time_limit_s: float = 5.0,
        memory_limit_mb: int = 256,
        *,
        python: str | None = None,
        network_namespace: bool | None = None,
        drop_privileges: bool | None = None,
        audit_hook: bool = True,
        site_packages: bool = False,
        kill_grace_s: float = 1.0,
        file_size_limit_mb: int = 16,
        output_limit: int = OUTPUT_LIMIT,
        workdir: Path | None = None,
    ) -> None:
        """`network_namespace` / `drop_privileges`: None uses the layer when the probe says it works,
        True requires it (RuntimeError otherwise), False skips it. `audit_hook=False` exists only to
        test the other layers. `workdir` is where the per-run temporary directories are created."""
        if time_limit_s <= 0 or memory_limit_mb <= 0:
            raise ValueError("time_limit_s and memory_limit_mb must be positive")
        self.time_limit_s = float(time_limit_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.python = python or sys.executable
        self.audit_hook = audit_hook
        self.site_packages = site_packages
        self.kill_grace_s = kill_grace_s
        self.file_size_limit_mb = file_size_limit_mb
        self.output_limit = output_limit
        self.workdir = workdir
        self._want_netns = network_namespace
        self._want_drop = drop_privileges
        self._probe_lock = threading.Lock()
        self._probed: dict[str, bool] = {}
        self._unshare: str | None = None  # the path of a working `unshare`
        self._drop_to: tuple[int, int] | None = None  # (uid, gid) to run user code as
        self._validator = jsonschema.Draft202012Validator(_PARAMETERS)

    # ------------------------------------------------------------------ isolation probes

    def _unshare_path(self) -> str | None:
        with self._probe_lock:
            if not self._probed.get("netns"):
                self._unshare = None if self._want_netns is False else _probe_unshare()
                self._probed["netns"] = True
            if self._want_netns and not self._unshare:
                raise RuntimeError("network_namespace=True but `unshare --net` does not work here")
            return self._unshare

    def _drop_ids(self) -> tuple[int, int] | None:
        with self._probe_lock:
            if not self._probed.get("drop"):
                self._drop_to = None if self._want_drop is False else _probe_drop(self.python)
                self._probed["drop"] = True
            if self._want_drop and not self._drop_to:
                raise RuntimeError("drop_privileges=True but running as nobody does not work here")
            return self._drop_to

    def isolation(self) -> dict[str, bool]:
        """Which layers this sandbox applies on this machine (runs the probes if needed)."""
        return {
            "process": True,
            "network_namespace": self._unshare_path() is not None,
            "unprivileged_uid": self._drop_ids() is not None,
            "resource_limits": True,
            "audit_hook": self.audit_hook,
        }

    # ------------------------------------------------------------------ running

    def run(
        self,
        code: str,
        tests: Sequence[str] | str = (),
        *,
        time_limit_s: float | None = None,
        memory_limit_mb: int | None = None,
        workdir: Path | None = None,
    ) -> CodeResult:
        """Run `code`, then each test against its namespace, in a fresh child process and directory."""
        cases = split_tests(tests)
        limit = float(time_limit_s or self.time_limit_s)
        memory = int(memory_limit_mb or self.memory_limit_mb)
        unshare, drop_to = self._unshare_path(), self._drop_ids()
        root = Path(tempfile.mkdtemp(prefix="synth-code-", dir=workdir or self.workdir))
        nonce = secrets.token_hex(16)
        try:
            if drop_to is not None:
                os.chown(root, *drop_to)
            job = {
                "code": code,
                "tests": [list(case) for case in cases],
                "nonce": nonce,
                "time_limit_s": limit,
                "cpu_limit_s": math.ceil(limit + self.kill_grace_s) + 1,
                "memory_limit_mb": memory,
                "file_size_limit_mb": self.file_size_limit_mb,
                "drop_to": list(drop_to) if drop_to else None,
                "audit_hook": self.audit_hook,
            }
            (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as res:
                returncode, killed = self._spawn(root, unshare, res, out, err, limit)
                res.seek(0)
                stdout, stderr = _read_capped(out, self.output_limit), _read_capped(err, self.output_limit)
                return _assemble(res.read(), nonce, cases, returncode, killed, stdout, stderr, limit, memory)
        finally:
            _remove_tree(root)

    def _spawn(
        self, root: Path, unshare: str | None, res: IO[bytes], out: IO[bytes], err: IO[bytes], limit: float
    ) -> tuple[int, bool]:
        flags = ["-I", "-B", "-X", "utf8"] + ([] if self.site_packages else ["-S"])
        argv = [self.python, *flags, str(RUNNER), "job.json", str(res.fileno())]
        if unshare:
            argv = [unshare, "--net", *argv]
        env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(root), "TMPDIR": str(root)}
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(res.fileno(),),
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=limit + self.kill_grace_s), False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            return proc.wait(), True
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise

    async def arun(self, code: str, tests: Sequence[str] | str = (), **kwargs: Any) -> CodeResult:
        """`run` in a worker thread, for the async pipeline."""
        return await asyncio.to_thread(self.run, code, tests, **kwargs)

    # ------------------------------------------------------------------ the agent tool

    def tools(self) -> list[ToolSpec]:
        """The `run_python` tool: run code (and optional tests) in this sandbox."""
        effect: Literal["read", "write"] = "read"
        return [
            ToolSpec(
                id=content_id("sandbox", "code", TOOL_NAME, _PARAMETERS, _RETURNS, effect, prefix="tool-"),
                name=TOOL_NAME,
                description=(
                    "Run a Python 3 program in an isolated sandbox (standard library only, no network, no "
                    "subprocesses, no files outside its working directory, time and memory limits) and, optionally, "
                    "test snippets such as `assert f(2) == 4` against its namespace. Returns stdout, stderr, "
                    "errors and per-test results with the pass rate."
                ),
                parameters=_PARAMETERS,
                returns=_RETURNS,
                effect=effect,
                failure_modes=["invalid_arguments", "syntax_error", "runtime_error", "timeout", "memory_exceeded"],
                category="sandbox",
                domain="code",
                source="sandbox",
            )
        ]

    def call(self, name: str, arguments: Any) -> dict[str, Any]:
        """Run one tool call; every problem comes back as `{"error": code, "message": ...}`."""
        if name != TOOL_NAME:
            return {"error": "unknown_tool", "message": f"no tool named {name!r} in the code sandbox"}
        if not isinstance(arguments, dict):
            return {"error": "invalid_arguments", "message": "arguments must be a JSON object"}
        problem = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if problem is not None:
            where = "/".join(str(part) for part in problem.absolute_path) or "(arguments)"
            return {"error": "invalid_arguments", "message": f"{where}: {problem.message}"[:300]}
        return self.run(arguments["code"], arguments.get("tests", [])).to_json()

    def call_tool(self, call: ToolCall) -> dict[str, Any]:
        """Run a model's tool call: its arguments are JSON text, decoded here."""
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            return {"error": "invalid_arguments", "message": f"arguments are not valid JSON: {exc}"}
        return self.call(call.function.name, arguments)

    async def acall(self, name: str, arguments: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.call, name, arguments)


def run_code(
    code: str,
    tests: Sequence[str] | str = (),
    *,
    time_limit_s: float = 5,
    memory_limit_mb: int = 256,
    workdir: Path | None = None,
) -> CodeResult:
    """Run `code` and its tests in a fresh sandbox. Reuse a `CodeSandbox` to probe the machine once."""
    return CodeSandbox(time_limit_s, memory_limit_mb, workdir=workdir).run(code, tests)


_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "the Python program; it runs as module `solution`"},
        "tests": {
            "type": "array",
            "items": {"type": "string"},
            "description": "test snippets run one by one against the program's namespace, e.g. `assert f(2) == 4`",
        },
    },
    "required": ["code"],
    "additionalProperties": False,
}
_RETURNS: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{key: {"type": "integer"} for key in ("passed", "failed", "total")},
        "pass_rate": {"type": "number"},
        **{key: {"type": "boolean"} for key in ("timed_out", "memory_exceeded")},
        "error": {"type": ["string", "null"]},
        **{key: {"type": "string"} for key in ("stdout", "stderr")},
        "tests": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {}, "passed": {}, "message": {}}},
        },
    },
}


# ---------------------------------------------------------------------- probes and process helpers


def _probe_unshare() -> str | None:
    """The path of `unshare` when `unshare --net true` works here, else None."""
    path = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.path.exists(p)), None)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--net", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if done.returncode == 0 else None


def _probe_drop(python: str) -> tuple[int, int] | None:
    """(uid, gid) of nobody when the parent is root and `python` still works as nobody, else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
        ids = (entry.pw_uid, entry.pw_gid)
    except KeyError:
        ids = (65534, 65534)
    script = (
        f"import os; os.setgroups([]); os.setgid({ids[1]}); os.setuid({ids[0]})\n"
        "os.listdir(os.path.dirname(os.__file__)); import json, decimal, fractions; print('ok')"
    )
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-B", "-c", script], cwd="/", env={}, capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return ids if done.returncode == 0 and done.stdout.strip() == b"ok" else None


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _remove_tree(root: Path) -> None:
    def unlock(function: Any, path: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(path), stat.S_IRWXU)
            os.chmod(path, stat.S_IRWXU)
            function(path)
        except OSError:
            pass

    shutil.rmtree(root, onerror=unlock)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)


def _read_capped(stream: IO[bytes], limit: int) -> str:
    size = os.fstat(stream.fileno()).st_size
    stream.seek(0)
    text = stream.read(limit).decode("utf-8", errors="replace")
    return text + f"\n[... {size - limit} more bytes truncated]" if size > limit else text


# ---------------------------------------------------------------------- reading the child's report


class _Malformed(ValueError):
    pass


def _parse(raw: bytes, nonce: str, total: int, killed: bool) -> list[dict[str, Any]]:
    *lines, tail = raw.split(b"\n")
    if tail and not killed:
        raise _Malformed("unterminated result line")
    events, seen = [], set()
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise _Malformed(f"not JSON: {line[:80]!r}") from exc
        if not isinstance(event, dict) or event.get("nonce") != nonce:
            raise _Malformed(f"foreign result line: {line[:80]!r}")
        kind = event.get("kind")
        if kind == "test":
            index = event.get("index")
            if not isinstance(index, int) or not 0 <= index < total or not isinstance(event.get("passed"), bool):
                raise _Malformed(f"bad test result: {line[:80]!r}")
            if index in seen:
                raise _Malformed(f"test {index} reported twice")
            seen.add(index)
        elif kind not in ("ready", "solution", "done"):
            raise _Malformed(f"unknown result kind: {kind!r}")
        events.append(event)
    return events


def _assemble(
    raw: bytes,
    nonce: str,
    cases: list[tuple[str, str]],
    returncode: int,
    killed: bool,
    stdout: str,
    stderr: str,
    limit: float,
    memory: int,
) -> CodeResult:
    total = len(cases)
    try:
        events = _parse(raw, nonce, total, killed)
    except _Malformed as exc:
        failed = tuple(CaseResult(name, False, "no trustworthy result") for name, _ in cases)
        return CodeResult(0, total, total, 0.0, error=f"malformed sandbox result: {exc}", stdout=stdout,
                          stderr=stderr, tests=failed)  # fmt: skip
    results: dict[int, CaseResult] = {}
    error: str | None = None
    timed_out = memory_exceeded = finished = False
    for event in events:
        timed_out |= bool(event.get("timed_out"))
        memory_exceeded |= bool(event.get("memory_exceeded"))
        if event["kind"] == "solution" and event.get("error"):
            error = str(event["error"])
        elif event["kind"] == "test":
            index = event["index"]
            results[index] = CaseResult(cases[index][0], event["passed"], str(event.get("message", "")))
            if event.get("timed_out") and error is None:
                error = f"time limit exceeded ({limit:g} s) in {cases[index][0]}"
            if event.get("memory_exceeded") and error is None:
                error = f"memory limit exceeded ({memory} MB) in {cases[index][0]}"
        elif event["kind"] == "done":
            finished = True
    if not finished:
        signalled = -returncode if returncode < 0 else 0
        if killed or signalled in (signal.SIGXCPU, signal.SIGKILL):
            timed_out = True
            error = error or f"time limit exceeded ({limit:g} s); the sandbox was killed"
        elif any(marker in stderr for marker in _MEMORY_MARKERS):
            memory_exceeded = True
            error = error or f"memory limit exceeded ({memory} MB); the sandbox died"
        else:
            tail = stderr.strip().splitlines()[-1:] or [""]
            error = error or f"the sandbox exited with code {returncode} before finishing: {tail[0][:300]}"
    missing = "no result: time limit exceeded" if timed_out else "no result: the sandbox stopped early"
    tests = tuple(results.get(i) or CaseResult(name, False, missing) for i, (name, _) in enumerate(cases))
    passed = sum(case.passed for case in tests)
    return CodeResult(
        passed=passed,
        failed=total - passed,
        total=total,
        pass_rate=passed / total if total else 0.0,
        timed_out=timed_out,
        memory_exceeded=memory_exceeded,
        error=error,
        stdout=stdout,
        stderr=stderr,
        tests=tests,
    )
