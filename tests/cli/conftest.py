import pytest

from cli_runner import run_sportlens


@pytest.fixture
def sportlens():
    """The `sportlens` command, run as a subprocess."""
    return run_sportlens
