"""The real-engine suite's fixtures: enginelib's, registered for the session."""

import enginelib
import pytest


def pytest_configure(config: pytest.Config) -> None:
    enginelib.register(config)
