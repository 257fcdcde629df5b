"""Live MCP servers for tests: the servers in tests/mcp_servers/, over stdio or on a loopback port."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVERS = Path(__file__).parent / "mcp_servers"


def stdio_command(script: str, *args: str) -> str:
    return shlex.join([sys.executable, str(SERVERS / script), *args])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(script: str, *args: str) -> Iterator[str]:
    """Start `script ARGS http PORT` and yield its MCP URL once the port accepts; killed afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVERS / script), *args, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{script} exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()
