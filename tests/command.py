"""The `seguibot` command run in the test's own process, through `bot.cli.main`.

What a user gets from the command (its output, its errors, its exit code) for the arguments,
environment, standard input and folder they give it, without starting Python and importing
the service again for every command (a second or two each). What only a separate process
shows (serving a port, signals, `make run`) is tested with one (tests/integration/test_cli.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from bot.cli import main

ROOT = Path(__file__).resolve().parents[1]


def seguibot(
    *args: str, env: Mapping[str, str], stdin: str = "", cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run `seguibot ARGS` with exactly `env` as its environment, in `cwd`."""
    out, err = io.StringIO(), io.StringIO()
    with _environment(env), contextlib.chdir(cwd), _logging_kept():
        saved_stdin = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as exit_:  # argparse's usage errors and --help
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.stdin = saved_stdin
    return subprocess.CompletedProcess(
        ["seguibot", *args], code, stdout=out.getvalue(), stderr=err.getvalue()
    )


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """The command configures the root logger for its run (its handler writes to the
    redirected stderr); the suite's handlers and level come back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
