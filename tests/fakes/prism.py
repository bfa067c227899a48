"""Prism (`@stoplight/prism-cli`, pinned in package.json) as a request-shape validator.

`prism mock` serves the Twilio Messages subset spec: a request that breaks the spec gets a 4xx
(422 `application/problem+json`, or 401 without basic auth), a valid one the spec's example. It
does not know Twilio's cross-field rules (From or MessagingServiceSid, Body/MediaUrl/ContentSid,
the WhatsApp window): `FakeTwilioServer` checks those.

Use it from a session-scoped fixture, skipping when it cannot run:

    @pytest.fixture(scope="session")
    def prism() -> Iterator[PrismMock]:
        reason = PrismMock.unavailable_reason()
        if reason:
            pytest.skip(reason)
        with PrismMock() as mock:
            yield mock

Prism 5.14.2 is the newest 5.x whose `engines` field accepts Node.js 20 (5.15.10 and later ask
for Node.js >= 24.14). Install it with `npm ci` at the project root.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.paths import TWILIO_SPEC

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRISM_BIN = PROJECT_ROOT / "node_modules/.bin/prism"
SPEC_PATH = TWILIO_SPEC


class PrismStartError(RuntimeError):
    """Prism is installed but did not come up; the message carries the end of its log."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PrismMock:
    """`prism mock <spec> -h <host> -p <port>` for the duration of a `with` block."""

    def __init__(
        self,
        spec: Path = SPEC_PATH,
        prism: Path = PRISM_BIN,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.spec = spec
        self.prism = prism
        self.host = host
        self.port = port or _free_port(host)
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @staticmethod
    def unavailable_reason(spec: Path = SPEC_PATH, prism: Path = PRISM_BIN) -> str | None:
        """Why Prism cannot run here (for `pytest.skip`), or None when it can."""
        if not prism.exists():
            return f"prism not installed: run `npm ci` in {PROJECT_ROOT} (looked for {prism})"
        if shutil.which("node") is None:
            return "prism needs Node.js: `node` is not on PATH"
        if not spec.is_file():
            return f"Twilio spec for prism not found: {spec} (tests/data/specs)"
        return None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start Prism and wait until it answers HTTP.

        Raises:
            PrismStartError: it exited or did not answer within `startup_timeout`.
        """
        # Prism logs every request; a file, unlike a pipe, cannot fill up and stall it. It stays
        # open until stop(), so no `with`.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        began = time.monotonic()
        self._process = subprocess.Popen(
            [str(self.prism), "mock", str(self.spec), "-h", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = began + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                problem = f"prism exited with {self._process.returncode}"
                break
            if self._answers():
                self.startup_seconds = time.monotonic() - began
                return
            time.sleep(0.05)
        else:
            problem = f"prism did not answer within {self.startup_timeout} s"
        log = self.log()
        self.stop()
        raise PrismStartError(f"{problem}: {log}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (Prism says 404 for `/`) means it is listening
        except OSError:
            return False

    def log(self, tail: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-tail:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
