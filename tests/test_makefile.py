"""What a newcomer types: make help, make run PORT=..., make cron without Redis."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_BASE_URL", "REDIS_URL", "MAKEFLAGS", "PORT")}
    env.update(environment)
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_help_shows_the_port_not_a_make_variable():
    default, chosen = make("help"), make("help", "PORT=5101")
    assert "$(PORT)" not in default.stdout + chosen.stdout
    assert "http://127.0.0.1:5000" in default.stdout
    assert "http://127.0.0.1:5101" in chosen.stdout


def served_config(run_line: str, **environment: str) -> list[str]:
    """Run the environment prefix of a `make run` command with Python instead of flask: the config it gets."""
    prefix = run_line.split(" .venv/bin/flask", 1)[0]
    probe = (
        "from mp_backend.config import Config; c = Config(); "
        "print(c.PUBLIC_BASE_URL); print(c.WECHAT_API_BASE_URL); print(c.WECHAT_OAUTH_BASE_URL)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_BASE_URL", "DATABASE_URL")}
    env.update(environment)
    env.pop("WECHAT_API_BASE_URL", None)
    env.pop("WECHAT_OAUTH_BASE_URL", None)
    command = f'{prefix} "{sys.executable}" -c "{probe}"'
    result = subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_run_on_another_port_uses_that_port_for_links_and_the_sandbox():
    # when make run is asked for port 5101
    dry = make("-n", "run", "PORT=5101")
    lines = [line for line in dry.stdout.splitlines() if "/flask --app wsgi" in line]
    serve = next(line for line in lines if " run " in line)
    # then it serves on 5101, and every step (migrate, demo load, serve) sees PUBLIC_BASE_URL on 5101
    assert re.search(r"--port 5101\b", serve)
    assert len(lines) == 3
    for line in lines:
        assert served_config(line) == [
            "http://127.0.0.1:5101",
            "http://127.0.0.1:5101/sandbox/wechat/",
            "http://127.0.0.1:5101/sandbox/wechat/connect/",
        ]
    # unless PUBLIC_BASE_URL is set in the environment, which always wins
    assert served_config(serve, PUBLIC_BASE_URL="https://member.example.com")[0] == "https://member.example.com"


def test_cron_without_redis_says_what_is_missing():
    result = make("cron")
    assert result.returncode != 0
    assert "make cron needs REDIS_URL" in result.stderr
    assert "Usage:" not in result.stderr  # not click's raw error


def test_ci_runs_lint_before_the_tests():
    script = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in script
    assert script.index("make lint") < script.index("make test")
