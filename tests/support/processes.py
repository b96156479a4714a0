"""Start, watch and stop real worker processes (dramatiq, celery, gunicorn).

Output goes to a log file the tests can read and wait on: readiness is the
event "this line appeared in the log", never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from signal import SIGTERM
from typing import Any


class ManagedProcess:
    """A subprocess in its own process group, logged to a file."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str = "process",
        popen_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.name = name
        # More subprocess.Popen arguments (e.g. user/group to drop root).
        self.popen_kwargs = popen_kwargs or {}
        fd, path = tempfile.mkstemp(prefix=f"pgrp-{name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self.popen_kwargs,
        )
        log.close()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = 60.0, *, count: int = 1) -> str:
        """Block until ``pattern`` (a regex) matched ``count`` times in the log."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            if len(regex.findall(text)) >= count:
                return text
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before "
                    f"{pattern!r} appeared:\n{text[-6000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{pattern!r} not seen from {self.name} in {timeout}s:\n{text[-6000:]}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30.0, sig: int = SIGTERM) -> int | None:
        """Stop the whole process group: ``sig``, then SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Children that outlived the leader (prefork pools) go too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
