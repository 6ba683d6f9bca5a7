"""``python -m sweep dashboard``: optuna-dashboard on the study storage, with the artifact
store the trials wrote their images to."""

from __future__ import annotations

import argparse
import socket

from sweep.errors import UsageError

HELP = "optuna-dashboard on this storage, with the trials' images"
PARENTS = ("storage",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default: 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 "
                        "lets anyone who reaches this machine read and change the studies)")


def check_port(host: str, port: int) -> None:
    """Refuse a port that is out of range or taken, before the server starts."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be in [1, 65535], got {port}")
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise UsageError(f"--port {port}: cannot listen on {host}:{port} "
                             f"({err.strerror or err})") from None


def run(args: argparse.Namespace) -> int:
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from sweep.storage import artifact_dir, open_storage, resolve_storage_url

    check_port(args.host, args.port)
    url = resolve_storage_url(args.storage)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    store = FileSystemArtifactStore(str(artifact_dir(url)))
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {url}", flush=True)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0
