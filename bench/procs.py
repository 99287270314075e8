"""Running ``peerdesk run`` as a real process, and watching it: readiness through
``/healthz``, resident memory from ``/proc`` (Linux)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB (``VmHWM`` is its peak so far)."""
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {field} for process {pid}")
    return int(match.group(1)) / 1024


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any PEERDESK_ setting, plus ``extra``; the repository
    root is importable (for ``python -m bench.…`` helpers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERDESK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Peerdesk:
    """A running ``peerdesk run`` process."""

    process: subprocess.Popen[bytes]
    url: str
    started: float  # time.monotonic() at launch
    ready_after: float  # seconds from launch to /healthz answering 200

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_mb(self) -> float:
        return rss_mb(self.pid, "VmHWM")


async def wait_healthy(url: str, process: subprocess.Popen[bytes], *, within: float) -> None:
    """Poll ``/healthz`` until it answers 200 (without blocking the event loop: the fake
    servers the process talks to may run in it)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"peerdesk exited with {process.returncode} during startup")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError(f"peerdesk did not answer /healthz within {within:.0f} s")


@asynccontextmanager
async def peerdesk(
    workdir: Path, env: Mapping[str, str], *, demo: bool = False, within: float = 180.0
) -> AsyncIterator[Peerdesk]:
    """Start ``peerdesk run`` in ``workdir`` with ``env`` (PEERDESK_* settings), wait for
    ``/healthz``, yield it, then stop it with Ctrl-C (SIGINT) as a person would."""
    port = free_port()
    args = [sys.executable, "-m", "bot.cli", "run", "--host", "127.0.0.1", "--port", str(port)]
    if demo:
        args.append("--demo")
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "peerdesk.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        args, cwd=workdir, env=clean_env(**env), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, within=within)
        yield Peerdesk(process, url, started, time.monotonic() - started)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
