"""``python -m sweep dashboard``: optuna-dashboard on the study storage, with the artifact
stores the trials wrote their images to (each study's own, from its settings)."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from typing import TYPE_CHECKING

from sweep.errors import UsageError
from sweep.storage.database import STORAGE_ENV

if TYPE_CHECKING:
    from sweep.storage.stores import Stores

HELP = "optuna-dashboard on this storage, with the trials' images"
PARENTS = ("storage",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default: 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 "
                        "lets anyone who reaches this machine read and change the studies)")
    p.add_argument("--artifacts", metavar="URL",
                   help="read images from this store instead of the ones the studies' "
                        "settings name (after moving the store; see README, Many machines)")
    p.add_argument("--print-command", action="store_true",
                   help="print the plain optuna-dashboard command that serves the same "
                        "storage and images, and exit; it reads the storage URL from "
                        f"${STORAGE_ENV}, so no password goes on its command line")


def plain_command(url: str, host: str, port: int, artifact_dir: str,
                  url_in_env: bool) -> list[str]:
    """The lines ``--print-command`` prints: a comment saying where the command reads the
    storage URL from (how to set it, unless ``url_in_env``: $VAE_SWEEP_STORAGE holds it
    already), then the command. The URL goes through the environment, never argv: every
    local user reads a process's command line (``ps``), and the URL may hold a password."""
    from sweep.storage.database import journal_path, shown

    rest = shlex.join(["--host", host, "--port", str(port), "--artifact-dir", artifact_dir])
    journal = journal_path(url)
    if journal is not None:  # a file holds no password: optuna-dashboard takes its path
        return ["# the study's journal file, as optuna-dashboard takes it",
                f"optuna-dashboard {shlex.quote(str(journal))} {rest}"]
    note = f"# the storage URL comes from ${STORAGE_ENV}, so no password goes on the command line"
    if url_in_env:
        note += " (set in this shell)"
    else:
        hidden = shown(url) != url
        note += (f"; set it first: export {STORAGE_ENV}={shlex.quote(shown(url))}"
                 + (" (with the password in place of ***)" if hidden else ""))
    return [note, f'optuna-dashboard "${STORAGE_ENV}" {rest}']


def check_port(host: str, port: int) -> None:
    """Refuse a port that is out of range or taken, before the server starts."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be in [1, 65535], got {port}")
    with socket.socket() as s:
        # As the server binds (SO_REUSEADDR): a port held only by TIME-WAIT sockets of a
        # closed server is free for it, and was refused here for about 60 s.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise UsageError(f"--port {port}: cannot listen on {host}:{port} "
                             f"({err.strerror or err})") from None


def stores_of(storage: object, url: str, override: str | None) -> list[Stores]:
    """The stores of every study in ``storage`` (``override`` alone when given)."""
    import optuna

    from sweep.storage import settings as study_settings
    from sweep.storage.stores import normalize, open_stores

    if override:
        return [open_stores(normalize(override), url, "")]
    found: dict[str | None, Stores] = {}
    for name in optuna.get_all_study_names(storage):  # type: ignore[arg-type]
        study = optuna.load_study(study_name=name, storage=storage)  # type: ignore[arg-type]
        store = (study_settings.stored(study) or {}).get("artifacts")
        if store not in found:
            found[store] = open_stores(store, url, name)
    return list(found.values()) or [open_stores(None, url, "")]


def run(args: argparse.Namespace) -> int:
    from sweep.storage.database import open_storage, resolve_storage_url, shown
    from sweep.storage.stores import FirstFound

    if not args.print_command:
        check_port(args.host, args.port)
    url = resolve_storage_url(args.storage)
    storage = open_storage(url, heartbeat_interval=None, must_exist=True)
    stores = stores_of(storage, url, args.artifacts)
    if args.print_command:
        folders = [s.artifact_folder for s in stores if s.artifact_folder is not None]
        if len(folders) != len(stores) or len(folders) > 1:
            print("# optuna-dashboard takes one --artifact-dir; these studies keep images in "
                  f"{', '.join(s.where for s in stores)}: use python -m sweep dashboard")
            return 0
        in_env = bool(args.storage) and args.storage == os.environ.get(STORAGE_ENV)
        print("\n".join(plain_command(url, args.host, args.port, str(folders[0]), in_env)))
        return 0
    import optuna_dashboard

    from sweep.storage.copying import studies_without_artifacts

    for name, listed, where in studies_without_artifacts(storage, url, args.artifacts):
        print(f"study {name!r}: none of its {listed} images and files are in {where}; "
              "name the store that holds them with --artifacts URL", file=sys.stderr)
    store = stores[0].artifacts if len(stores) == 1 else FirstFound([s.artifacts for s in stores])
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {shown(url)}, images from "
          f"{', '.join(s.where for s in stores)}", flush=True)
    optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0
