"""Errors of the local stack. Each carries one line a user can act on."""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "JavaNotFoundError",
    "PortInUseError",
    "StackError",
    "StartupError",
]


class StackError(Exception):
    """Root of every local-stack error; ``str(err)`` is the one line shown to the user."""


class JavaNotFoundError(StackError):
    """Java or Maven is missing, or JAVA_HOME points nowhere."""


class PortInUseError(StackError):
    """A port the stack needs is already taken by another process."""


class ArtifactError(StackError):
    """A Maven artifact could not be resolved or unpacked."""


class StartupError(StackError):
    """A service started but did not become ready, or died while starting."""
