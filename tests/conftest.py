"""Shared fixtures live in tests/fixtures; this file only loads them."""

pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.worker"]
