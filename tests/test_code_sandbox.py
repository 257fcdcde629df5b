"""The code sandbox: pass rates as ground truth, limits enforced, and no way out (network, processes, files, env)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.code_sandbox import CaseResult, CodeSandbox, run_code, split_tests
from synth.records import ToolSpec

LIMIT_S = 1.0
MEMORY_MB = 128
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0", "assert add(2, 2) == 4"]


@pytest.fixture(scope="module")
def sandbox() -> CodeSandbox:
    return CodeSandbox(LIMIT_S, MEMORY_MB)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback listener in the parent, to prove that nothing from the child reaches it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    yield server
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises((TimeoutError, socket.timeout)):
        conn, _ = server.accept()
        conn.close()


# ---------------------------------------------------------------- pass rates


def test_correct_solution_passes_everything(sandbox: CodeSandbox) -> None:
    result = run_code(ADD + "print('ready')", ADD_TESTS, time_limit_s=LIMIT_S, memory_limit_mb=MEMORY_MB)
    assert (result.passed, result.failed, result.total, result.pass_rate) == (4, 0, 4, 1.0)
    assert result.ok and result.error is None and not result.timed_out and not result.memory_exceeded
    assert result.stdout == "ready\n"
    assert [case.name for case in result.tests] == ["test_1", "test_2", "test_3", "test_4"]


def test_broken_solution_gets_a_fractional_pass_rate(sandbox: CodeSandbox) -> None:
    result = sandbox.run("def add(a, b):\n    return a * b\n", ADD_TESTS)
    assert (result.passed, result.failed, result.total, result.pass_rate) == (2, 2, 4, 0.5)
    assert not result.ok and result.error is None
    assert [case.passed for case in result.tests] == [False, False, True, True]
    assert result.tests[0] == CaseResult("test_1", False, "assert add(1, 2) == 3 -- got 2, expected 3")


def test_one_failing_test_does_not_stop_the_others(sandbox: CodeSandbox) -> None:
    tests = ["assert add(1, 2) == 3", "raise ValueError('boom')", "undefined_name", "assert add(1, 1) == 2"]
    result = sandbox.run(ADD, tests)
    assert [case.passed for case in result.tests] == [True, False, False, True]
    assert "ValueError: boom" in result.tests[1].message
    assert "NameError" in result.tests[2].message
    assert result.pass_rate == 0.5


def test_syntax_error_fails_every_test_with_an_error(sandbox: CodeSandbox) -> None:
    result = sandbox.run("def add(a, b)\n    return a + b\n", ADD_TESTS)
    assert result.pass_rate == 0.0 and result.passed == 0 and result.total == 4
    assert result.error is not None and "SyntaxError" in result.error
    assert all(not case.passed for case in result.tests)


def test_a_crashing_solution_fails_every_test(sandbox: CodeSandbox) -> None:
    result = sandbox.run(ADD + "add(1)\n", ADD_TESTS)
    assert result.pass_rate == 0.0 and result.error is not None and "TypeError" in result.error


def test_tests_can_import_the_solution_module(sandbox: CodeSandbox) -> None:
    result = sandbox.run(ADD, ["from solution import add as plus\nassert plus(2, 3) == 5"])
    assert result.pass_rate == 1.0


def test_a_test_module_string_is_split_into_tests(sandbox: CodeSandbox) -> None:
    module = (
        "from solution import add\n"
        "assert add(1, 2) == 3\n"
        "assert add(1, 2) == 4\n"
        "def test_zero():\n    assert add(0, 0) == 0\n"
        "def helper():\n    return 7\n"
    )
    cases = split_tests(module)
    assert [name for name, _ in cases] == ["test_1", "test_2", "test_zero"]
    result = sandbox.run(ADD, module)
    assert [(case.name, case.passed) for case in result.tests] == [
        ("test_1", True),
        ("test_2", False),
        ("test_zero", True),
    ]
    assert split_tests("this is not python") == [("test_1", "this is not python")]


# ---------------------------------------------------------------- limits


def test_endless_loop_is_stopped_and_reported(sandbox: CodeSandbox) -> None:
    result = sandbox.run("while True:\n    pass\n", ADD_TESTS)
    assert result.timed_out and result.pass_rate == 0.0
    assert result.error is not None and "time limit" in result.error


def test_endless_loop_in_one_test_keeps_the_earlier_results(sandbox: CodeSandbox) -> None:
    code = ADD + "def spin():\n    while True:\n        pass\n"
    result = sandbox.run(code, ["assert add(1, 2) == 3", "spin()", "assert add(1, 1) == 2"])
    assert result.timed_out
    assert [case.passed for case in result.tests] == [True, False, False]
    assert result.pass_rate == pytest.approx(1 / 3)


def test_code_that_swallows_the_alarm_is_killed_by_the_parent(sandbox: CodeSandbox) -> None:
    code = (
        "def stubborn():\n"
        "    while True:\n"
        "        try:\n"
        "            sum(range(10**5))\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    result = sandbox.run(code, ["assert 1 == 1", "stubborn()"])
    assert result.timed_out
    assert [case.passed for case in result.tests] == [True, False]


@pytest.mark.parametrize(
    "code",
    ["x = bytearray(10**10)\n", "chunks = []\nwhile True:\n    chunks.append(bytearray(10**6))\n"],
    ids=["huge-allocation", "growing-list"],
)
def test_memory_bomb_is_stopped_and_reported(sandbox: CodeSandbox, code: str) -> None:
    result = sandbox.run(code, ["assert True"])
    assert result.memory_exceeded and result.pass_rate == 0.0
    assert result.error is not None and "memory" in result.error


def test_memory_bomb_in_a_test_leaves_the_other_tests_alone(sandbox: CodeSandbox) -> None:
    result = sandbox.run(ADD, ["assert add(1, 2) == 3", "x = [0] * 10**10", "assert add(2, 2) == 4"])
    assert result.memory_exceeded
    assert [case.passed for case in result.tests] == [True, False, True]


def test_stdout_is_captured_and_truncated(sandbox: CodeSandbox) -> None:
    result = sandbox.run("import sys\nprint('x' * 100_000)\nprint('oops', file=sys.stderr)\n", [])
    assert result.stdout.startswith("x" * 4096) and "truncated" in result.stdout and len(result.stdout) < 4300
    assert result.stderr == "oops\n"
    assert result.total == 0 and result.pass_rate == 0.0 and result.error is None


# ---------------------------------------------------------------- isolation


def test_the_child_cannot_open_a_socket(sandbox: CodeSandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "def connect():\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        f"    s.connect(('127.0.0.1', {port}))\n"
        "def connect_again():\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
    )
    result = sandbox.run(code, ["connect()", "connect_again()", "socket.socket(socket.AF_UNIX)"])
    assert result.pass_rate == 0.0
    assert all("PermissionError" in case.message for case in result.tests)
    assert_no_connection(listener)


def test_the_network_namespace_alone_also_blocks_the_loopback(listener: socket.socket) -> None:
    bare = CodeSandbox(LIMIT_S, MEMORY_MB, audit_hook=False)
    if not bare.isolation()["network_namespace"]:
        pytest.skip("`unshare --net` does not work on this machine")
    port = listener.getsockname()[1]
    result = bare.run("import socket\n", [f"socket.create_connection(('127.0.0.1', {port}), timeout=0.5)"])
    assert result.pass_rate == 0.0 and "OSError" in result.tests[0].message
    assert_no_connection(listener)


def test_processes_cannot_be_started(sandbox: CodeSandbox, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"sandbox-marker-{secrets.token_hex(6)}"
    tests = [
        f"import subprocess\nsubprocess.run(['touch', '{marker}'])",
        f"import os\nos.system('touch {marker}')",
        "import os\nos.fork()",
        f"import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])",
        f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import ctypes",
    ]
    result = sandbox.run("import subprocess\n", tests)  # importing is fine, spawning is not
    assert result.error is None and result.pass_rate == 0.0
    assert all("PermissionError" in case.message for case in result.tests), result.tests
    assert not marker.exists()


def test_writes_outside_the_working_directory_are_refused(sandbox: CodeSandbox) -> None:
    escape = Path("/tmp") / f"escape-{secrets.token_hex(6)}"
    tests = [
        f"open('{escape}', 'w').write('out')",
        f"import os\nos.close(os.open('{escape}', os.O_WRONLY | os.O_CREAT))",
        f"import shutil\nopen('mine.txt', 'w').close()\nshutil.copy('mine.txt', '{escape}')",
        f"import os\nopen('mine.txt', 'w').close()\nos.rename('mine.txt', '{escape}')",
        f"import os\nos.symlink('{escape}', 'link')",
        f"import pathlib\npathlib.Path('../{escape.name}').write_text('out')",
    ]
    result = sandbox.run("", tests)
    assert result.pass_rate == 0.0
    assert all("PermissionError" in case.message for case in result.tests), result.tests
    assert not escape.exists()


def test_the_working_directory_is_private_writable_and_deleted(sandbox: CodeSandbox) -> None:
    code = (
        "import os, tempfile\n"
        "open('data.txt', 'w').write('hello')\n"
        "os.makedirs('sub/dir')\n"
        "with tempfile.NamedTemporaryFile(delete=False) as f:\n    f.write(b'x')\n"
        "print(os.getcwd())\n"
    )
    result = sandbox.run(
        code, ["assert open('data.txt').read() == 'hello'", "import os\nassert os.path.isdir('sub/dir')"]
    )
    assert result.pass_rate == 1.0, result
    workdir = Path(result.stdout.strip())
    assert workdir.name.startswith("synth-code-") and not workdir.exists()


def test_reads_outside_the_sandbox_are_refused_but_the_stdlib_imports(sandbox: CodeSandbox) -> None:
    here = Path(__file__).resolve()
    tests = [
        f"open({str(here)!r}).read()",
        "open('/etc/passwd').read()",
        "import json, decimal, fractions, statistics, collections, heapq, re, datetime, dataclasses, typing",
    ]
    result = sandbox.run("", tests)
    assert [case.passed for case in result.tests] == [False, False, True], result.tests


def test_parent_secrets_are_not_visible(sandbox: CodeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-" + secrets.token_hex(12)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("MOONSHOT_API_KEY", secret)
    code = (
        "import os\n"
        "def leaked():\n"
        "    seen = repr(dict(os.environ)) + open('/proc/self/environ').read()\n"
        "    try:\n"
        "        seen += open(f'/proc/{os.getppid()}/environ').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "    return seen\n"
    )
    tests = [
        "assert 'OPENAI_API_KEY' not in os.environ and 'MOONSHOT_API_KEY' not in os.environ",
        f"assert {secret!r} not in leaked()",
        "assert 'PATH' not in os.environ",
    ]
    result = sandbox.run(code, tests)
    assert result.pass_rate == 1.0, result.tests
    assert secret not in result.stdout + result.stderr


def test_garbage_on_the_result_channel_gives_an_error_and_zero() -> None:
    sandbox = CodeSandbox(LIMIT_S, MEMORY_MB)
    forged = '{"kind": "done"}'
    code = f"import os, sys\nos.write(int(sys.argv[2]), b{forged!r} + bytes([10]))\n"
    result = sandbox.run(ADD + code, ADD_TESTS)
    assert result.pass_rate == 0.0 and result.passed == 0
    assert result.error is not None and "malformed" in result.error
    result = sandbox.run("import os\nos._exit(0)\n", ADD_TESTS)
    assert result.pass_rate == 0.0 and result.error is not None


def test_privileges_are_dropped_when_the_interpreter_allows_it() -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root and a system python3")
    sandbox = CodeSandbox(LIMIT_S, MEMORY_MB, python=python)
    if not sandbox.isolation()["unprivileged_uid"]:
        pytest.skip(f"{python} does not work as nobody here")
    escape = Path("/tmp") / f"escape-{secrets.token_hex(6)}"
    result = sandbox.run(ADD, [*ADD_TESTS, "import os\nassert os.getuid() == 65534", f"open('{escape}', 'w')"])
    assert [case.passed for case in result.tests] == [True] * 5 + [False]
    assert not escape.exists()


def test_isolation_report_matches_the_probes(sandbox: CodeSandbox) -> None:
    layers = sandbox.isolation()
    assert layers["process"] and layers["resource_limits"] and layers["audit_hook"]
    if sys.platform == "linux" and shutil.which("unshare") and os.geteuid() == 0:
        assert layers["network_namespace"]


# ---------------------------------------------------------------- the agent tool


def test_tools_expose_run_python(sandbox: CodeSandbox) -> None:
    (spec,) = sandbox.tools()
    assert isinstance(spec, ToolSpec)
    assert (spec.name, spec.source, spec.category, spec.domain) == ("run_python", "sandbox", "sandbox", "code")
    assert spec.parameters["required"] == ["code"]
    assert spec.id == CodeSandbox(LIMIT_S, MEMORY_MB).tools()[0].id  # stable across instances
    answer = sandbox.call("run_python", {"code": ADD, "tests": ADD_TESTS[:2]})
    assert answer["pass_rate"] == 1.0 and answer["tests"][0] == {"name": "test_1", "passed": True, "message": ""}
    assert sandbox.call("run_python", {"tests": []})["error"] == "invalid_arguments"
    assert sandbox.call("run_python", {"code": 3})["error"] == "invalid_arguments"
    assert sandbox.call("nope", {"code": ""})["error"] == "unknown_tool"


async def test_async_run(sandbox: CodeSandbox) -> None:
    result = await sandbox.arun(ADD, ADD_TESTS)
    assert result.pass_rate == 1.0
    answer = await sandbox.acall("run_python", {"code": "print(6 * 7)"})
    assert answer["stdout"] == "42\n" and answer["total"] == 0
