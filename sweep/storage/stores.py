"""Where a study's images and checkpoints live: one store, chosen once by ``start
--artifacts URL`` and kept in the study's settings, so every worker, ``resume``, ``report``
and ``sweep dashboard`` on any machine finds it without being told again.

- a path (or ``file:///path``): a shared folder (a volume, an NFS mount). Images go to
  ``PATH/artifacts`` (an Optuna ``FileSystemArtifactStore``, so ``optuna-dashboard
  --artifact-dir PATH/artifacts`` serves them too), checkpoints to
  ``PATH/checkpoints/<study>/trial-N``. A relative path is made absolute by ``start``.
- ``s3://BUCKET[/PREFIX]``: an S3-compatible object store (AWS, MinIO) through Optuna's
  ``Boto3ArtifactStore``; images under ``PREFIX/artifacts/``, checkpoints under
  ``PREFIX/checkpoints/<study>/trial-N/last.ckpt`` (written locally, uploaded after each
  epoch, downloaded by the re-run). The endpoint and credentials come from boto3's own
  environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), never from the database.
- none (a study made before stores, or without ``--artifacts``): the old places, beside
  the SQLite file or in the working directory (``sweep.storage.database.artifact_dir``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import urlparse

from sweep.errors import ParamError, UsageError
from sweep.storage.database import artifact_dir, checkpoint_dir
from sweep.storage.names import safe_name

if TYPE_CHECKING:
    from sweep.optuna_private import ArtifactStore

S3 = "s3://"


def normalize(url: str) -> str:
    """The store URL as settings keep it: ``s3://bucket[/prefix]`` or an absolute path.
    ParamError (exit 2) for anything else."""
    if url.startswith(S3):
        parsed = urlparse(url)
        if "@" in parsed.netloc:  # never echoed: the secret stays out of stderr and logs too
            raise ParamError("artifacts", f"s3://***@{parsed.hostname}: credentials do not go "
                             "in the URL (it is stored in the study's settings); set them in "
                             "boto3's environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                             "(or AWS_PROFILE), and AWS_ENDPOINT_URL for MinIO")
        if not parsed.netloc:
            raise ParamError("artifacts", f"{url}: an S3 URL needs a bucket (s3://BUCKET/PREFIX)")
        prefix = parsed.path.strip("/")
        return f"{S3}{parsed.netloc}" + (f"/{prefix}" if prefix else "")
    if url.startswith("file://"):
        url = urlparse(url).path
    elif "://" in url or not url:
        raise ParamError("artifacts", f"{url!r}: expected a folder path, file:///path or "
                         "s3://BUCKET/PREFIX")
    path = Path(url).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ParamError("artifacts", f"{url}: not a folder")
    return str(path)


def checkpoint_key(root: int) -> str:
    """Where the checkpoint of trial ``root``'s chain lies, relative to its study's
    checkpoint store: what trial attrs name (``resumed_from``), as the store's own path is
    this machine's, and every reader of a shared database would see it."""
    return f"trial-{root}/last.ckpt"


class CheckpointStore(Protocol):
    def local_dir(self, root: int) -> Path: ...
    def fetch(self, root: int) -> Path | None: ...
    def saved(self, root: int) -> None: ...
    def remove(self, root: int) -> None: ...


@dataclass
class FolderCheckpoints:
    """Checkpoints in a folder every worker reaches: nothing to copy."""

    root: Path

    def local_dir(self, root: int) -> Path:
        return self.root / f"trial-{root}"

    def fetch(self, root: int) -> Path | None:
        last = self.local_dir(root) / "last.ckpt"
        return last if last.exists() else None

    def saved(self, root: int) -> None:
        """Nothing to upload: the folder is the store."""

    def remove(self, root: int) -> None:
        shutil.rmtree(self.local_dir(root), ignore_errors=True)


@dataclass
class S3Checkpoints:
    """Checkpoints written to a local folder, copied to and from the bucket."""

    client: Any
    bucket: str
    prefix: str
    scratch: Path

    def _key(self, root: int) -> str:
        return self.prefix + checkpoint_key(root)

    def local_dir(self, root: int) -> Path:
        return self.scratch / f"trial-{root}"

    def fetch(self, root: int) -> Path | None:
        last = self.local_dir(root) / "last.ckpt"
        last.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(root), str(last))
        except Exception:  # no checkpoint yet (404) or the store is unreachable: start fresh
            last.unlink(missing_ok=True)
            return None
        return last

    def saved(self, root: int) -> None:
        self.client.upload_file(str(self.local_dir(root) / "last.ckpt"), self.bucket,
                                self._key(root))

    def remove(self, root: int) -> None:
        shutil.rmtree(self.local_dir(root), ignore_errors=True)
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(root))


class Prefixed:
    """An artifact store whose ids live under a key prefix (Boto3ArtifactStore has none)."""

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.store.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + artifact_id)


class FirstFound:
    """Reads an artifact from the first of several stores that has it (the dashboard of a
    storage whose studies keep their images in different places); writes to the first."""

    def __init__(self, stores: list[ArtifactStore]) -> None:
        self.stores = stores

    def open_reader(self, artifact_id: str) -> BinaryIO:
        from optuna.artifacts.exceptions import ArtifactNotFound

        for store in self.stores[:-1]:
            with contextlib.suppress(ArtifactNotFound, FileNotFoundError, OSError):
                return store.open_reader(artifact_id)
        return self.stores[-1].open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.stores[0].remove(artifact_id)


@dataclass
class Stores:
    artifacts: ArtifactStore
    checkpoints: CheckpointStore
    where: str  # for messages and the dashboard command
    artifact_folder: Path | None  # what `optuna-dashboard --artifact-dir` takes, if any


def s3_client() -> Any:
    try:
        import boto3
    except ImportError:
        raise UsageError("an s3:// artifact store needs boto3: pip install 'vae-sweep[s3]'") \
            from None
    return boto3.client("s3")


def open_stores(store_url: str | None, storage_url: str, study: str,
                client: Any = None) -> Stores:
    """The artifact and checkpoint stores of ``study`` (``store_url`` from its settings)."""
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

    if store_url is None:
        folder = artifact_dir(storage_url)
        folder.mkdir(parents=True, exist_ok=True)  # the store writes into it, never creates it
        return Stores(FileSystemArtifactStore(str(folder)),
                      FolderCheckpoints(checkpoint_dir(storage_url, study)),
                      str(folder), folder)
    if store_url.startswith(S3):
        parsed = urlparse(store_url)
        prefix = parsed.path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        client = client or s3_client()
        safe = safe_name(study)
        scratch = Path(tempfile.gettempdir()) / "vae-sweep-checkpoints" / parsed.netloc / safe
        return Stores(Prefixed(Boto3ArtifactStore(parsed.netloc, client=client),
                               f"{prefix}artifacts/"),
                      S3Checkpoints(client, parsed.netloc, f"{prefix}checkpoints/{safe}/",
                                    scratch),
                      store_url, None)
    root = Path(store_url)
    folder = root / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return Stores(FileSystemArtifactStore(str(folder)),
                  FolderCheckpoints(root / "checkpoints" / safe_name(study)), str(folder),
                  folder)
