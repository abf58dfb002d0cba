"""Starting and stopping the stack's own processes, tracked by pid files.

``down`` must stop exactly what ``up`` started and nothing else: a pid file alone is not
enough (pids are reused), so each process is also checked by its command line, which carries
a marker naming the service and the state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ManagedProcess"]


@dataclass(frozen=True)
class ManagedProcess:
    """A long-running child of the stack: its pid file, log file and identifying marker."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.out"

    @property
    def marker(self) -> str:
        """A JVM system property that makes our process recognisable in /proc."""
        return f"-Dnghean.hub.stack={self.name}@{self.state_dir.resolve()}"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _cmdline_has(pid, self.marker):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the CLI; not killed by its terminal's ^C
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def alive(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _exists(pid):
                break
            time.sleep(0.1)
        else:
            _signal(pid, signal.SIGKILL)
            while _exists(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _cmdline_has(pid: int, marker: str) -> bool:
    # Right after exec the JVM launcher can show an empty cmdline for a moment; look again
    # briefly rather than mistake our own starting process for a stranger.
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if raw:
            return marker.encode() in raw.split(b"\0")
        if not _exists(pid):
            return False
        time.sleep(0.05)
    return False


def _exists(pid: int) -> bool:
    # A zombie child still has /proc entries; reap it if it is ours.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
