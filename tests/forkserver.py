"""``python -m sweep ARGS`` for the tests, forked from a process that has already imported
torch, Lightning, Optuna and every module of ``sweep`` and ``models``.

Those imports are 6-7 s of every command on 2 cores (torchmetrics alone pulls in
torchvision's operators and with them ``torch._dynamo``), against well under a second of
tiny training: paid once per pytest-xdist worker instead of once per command, they took the
suite from about 8 min to the figure in the README's Development section.

Each command is still its own process, with the test's argv, working directory, environment,
stdin (``/dev/null``), stdout, stderr and exit status, as ``subprocess.run`` gives them; what
it skips is the interpreter's start and the imports. So a test of what happens *before*
those imports (bad input refused without loading torch, the import time itself) or of a
process's life under signals starts a fresh interpreter instead (``subprocess`` directly).

The server is this file run as a script: it answers one request at a time on a Unix socket
(one JSON line: argv, cwd, env; the three descriptors ride along as SCM_RIGHTS), forks, and
reports the child's pid and then its wait status. It exits when its parent's pipe closes.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _preload() -> None:
    """Import what every command imports, with the environment ``python -m sweep`` sets
    before torch loads (the OpenMP wait policy is read once, at torch's import)."""
    import importlib
    import pkgutil

    from sweep.runner.processes import wait_policy

    os.environ.update(wait_policy(os.environ))
    import matplotlib
    matplotlib.use("Agg")
    import optuna  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    for package in ("models", "sweep"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """Become ``python -m sweep *argv`` in ``cwd`` with ``env``; never returns."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # `python -m` puts the working directory first on the path (a user's `my_vae:build`).
    sys.path[0] = os.getcwd()
    sys.argv = ["-m", *request["argv"]]
    if os.environ.get("VAE_SWEEP_TEST_NO_STUDY"):  # conftest.no_study_unless_slow
        from sweep.runner.loop import Worker

        def refused(self: Any, trial: Any) -> None:
            print("a test not marked slow trained a study's trial: mark it "
                  "@pytest.mark.slow", file=sys.stderr, flush=True)
            os._exit(97)

        Worker.run_trial = refused  # type: ignore[method-assign]
    opened: list[sqlite3.Connection] = []  # closed at the end (see below)
    connect = sqlite3.connect

    def recorded(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    # the names SQLAlchemy's pysqlite dialect (dbapi2) and sweep.storage call it by
    sqlite3.connect = sqlite3.dbapi2.connect = recorded
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code: Any = 0
    try:
        runpy.run_module("sweep", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
    except BaseException:  # what the interpreter would print for an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    # The exit handlers run, then the process ends without tearing down the modules of
    # torch and Lightning one by one (1.5 s of every command here). What that teardown does
    # that shows on disk is done first: SQLite connections close, so a WAL database's -wal
    # and -shm files go as they do when a command exits.
    atexit._run_exitfuncs()
    for connection in opened:
        connection.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def serve(path: str) -> None:
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:  # the test process is gone
            return
        conn, _ = listener.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _child(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            _, status = os.waitpid(pid, 0)
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


class Server:
    """One fork server for this test process, started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.path = ""

    def _start(self) -> None:
        self.path = tempfile.mktemp(prefix="vae-sweep-fork-", suffix=".sock")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the fork server did not start: {line!r}")

    def run(self, args: list[str], *, cwd: str | Path, env: dict[str, str],
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``subprocess.run([python, "-m", "sweep", *args], capture_output=True,
        text=True)``, minus the interpreter's start."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        request = json.dumps({"argv": list(args), "cwd": str(Path(cwd).resolve()),
                              "env": dict(env)}).encode()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                open(os.devnull, "rb") as stdin, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            socket.send_fds(conn, [request], [stdin.fileno(), out.fileno(), err.fileno()])
            replies = conn.makefile("r")
            pid = int(replies.readline())
            conn.settimeout(timeout)
            try:
                code = int(replies.readline())
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                conn.settimeout(None)
                replies.readline()
                raise subprocess.TimeoutExpired(["python", "-m", "sweep", *args],
                                                timeout or 0) from None
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(["python", "-m", "sweep", *args], code,
                                               out.read().decode(), err.read().decode())


SERVER = Server()


def run(args: list[str], *, cwd: str | Path, env: dict[str, str] | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m sweep *args`` in ``cwd`` (``env`` defaults to this process's)."""
    return SERVER.run(args, cwd=cwd, env=dict(os.environ) if env is None else env,
                      timeout=timeout)


if __name__ == "__main__":
    serve(sys.argv[1])
