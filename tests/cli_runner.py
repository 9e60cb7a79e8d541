"""Runs the `sportlens` command as a user would: a real process, its stdout, stderr and exit code."""
import os
import subprocess
import sys
from pathlib import Path


def run_sportlens(*args, env_home: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_home is not None:
        env["SPORTLENS_HOME"] = str(env_home)
    return subprocess.run(
        [sys.executable, "-m", "sportlens.cli", *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
