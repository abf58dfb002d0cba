"""Finding Java and Maven, and checking ports, before anything is started."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from hub.stack.errors import JavaNotFoundError, PortInUseError

__all__ = ["find_java", "find_maven", "free_port", "java_env", "require_free_port"]


def find_java() -> Path:
    """The java binary: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else the one on PATH.

    A JAVA_HOME that points nowhere is an error rather than a silent fallback to PATH,
    because the user set it on purpose and would not expect another Java to run.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not java.is_file():
            raise JavaNotFoundError(
                f"JAVA_HOME={java_home} has no bin/java: point JAVA_HOME at a Java 17+ JDK "
                "or unset it to use the java on PATH"
            )
        return java
    found = shutil.which("java")
    if found is None:
        raise JavaNotFoundError("java not found on PATH: install a Java 17+ JDK or set JAVA_HOME")
    return Path(found)


def find_maven() -> Path:
    found = shutil.which("mvn")
    if found is None:
        raise JavaNotFoundError(
            "mvn (Apache Maven) not found on PATH: it resolves Kafka and the registry from "
            "Maven Central; install Maven 3.8+"
        )
    return Path(found)


def java_env() -> dict[str, str]:
    """Environment for java/mvn children, JAVA_HOME validated first."""
    find_java()
    return dict(os.environ)


def require_free_port(port: int, what: str, option: str) -> None:
    """Fail with one clear line if ``port`` on loopback is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUseError(
                f"port {port} for {what} is already in use on 127.0.0.1: "
                f"stop what holds it or choose another with {option}"
            ) from None


def free_port() -> int:
    """A port the kernel says is free now (for tests that need their own stack)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
