"""docker/ without a Docker engine: the compose file parses, every service that runs the
project's image runs a real ``python -m sweep`` command line (parsed by the CLI's own parser,
its storage URL and artifact store accepted), and every path it names exists."""

import re
import shlex
from pathlib import Path

import pytest

from sweep.cli import build_parser
from sweep.storage.database import check_url
from sweep.storage.stores import normalize

yaml = pytest.importorskip("yaml")  # PyYAML comes with the test extra

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def ours(compose: dict) -> dict:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def test_the_project_services_run_real_commands(compose):
    services = ours(compose)
    assert {"start", "worker", "worker-cpu", "dashboard"} <= set(services)
    for name, service in services.items():
        args = build_parser().parse_args(service["command"])  # exits 2 on a bad flag
        assert args.command in ("start", "worker", "dashboard"), name
        storage = service["environment"]["VAE_SWEEP_STORAGE"]
        check_url(storage)  # the driver the image installs is installed here too
        assert storage.split("@")[1].startswith("postgres:")
    start = build_parser().parse_args(services["start"]["command"])
    assert start.no_run and start.if_new and normalize(start.artifacts).startswith("s3://")
    assert build_parser().parse_args(services["worker"]["command"]).study == start.study


def test_the_paths_and_the_image_exist(compose):
    for service in ours(compose).values():
        context = (DOCKER / service["build"]["context"]).resolve()
        assert context == ROOT
        dockerfile = context / service["build"]["dockerfile"]
        assert dockerfile.is_file()
    text = (DOCKER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for source in shlex.split(line)[:-1]:
            assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["python", "-m", "sweep"]' in text
    assert re.search(r'^CMD \["worker"\]$', text, re.M)  # as the README says
    assert 'pip install ".[postgresql,s3]"' in text
    ci = (ROOT / ".ci" / "run").read_text()
    torch = re.search(r"ARG TORCH=(\S+)", text).group(1)
    vision = re.search(r"ARG TORCHVISION=(\S+)", text).group(1)
    assert f"torch=={torch} torchvision=={vision}" in ci  # the pair CI tests


def test_the_services_around_the_workers(compose):
    services = compose["services"]
    pg = services["postgres"]
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert "ports" not in pg and "ports" not in services["minio"]  # only the services reach them
    dashboard = services["dashboard"]
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]  # published on the host's loopback
    assert build_parser().parse_args(dashboard["command"]).host == "0.0.0.0"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    for name in ("worker", "worker-cpu", "dashboard"):
        assert services[name]["depends_on"]["start"]["condition"] == \
            "service_completed_successfully"
    assert services["start"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(compose["volumes"]) >= {"postgres", "minio"}


def test_each_profile_starts_its_own_workers_only(compose):
    """`--profile cpu` started the GPU worker too (it reserves an NVIDIA device) and ran
    start and the dashboard on the CUDA image."""
    services = ours(compose)

    def started(profile: str) -> dict:
        return {n: s for n, s in services.items() if profile in s.get("profiles", [profile])}

    cpu = started("cpu")
    assert set(cpu) == {"start", "worker-cpu", "dashboard"}
    for name, service in cpu.items():
        assert "deploy" not in service and service["build"]["args"]["VARIANT"] == "cpu", name
        assert service["image"] == "vae-sweep:cpu", name
    assert set(started("gpu")) == {"start", "worker", "dashboard"}
    assert services["worker"]["build"]["args"]["VARIANT"].startswith("cu")
    for name in ("minio", "bucket"):  # pinned, as hadolint and reproducible runs ask
        assert ":RELEASE." in compose["services"][name]["image"], name
