"""deploy/: the compose file and the Kubernetes manifests parse, every command they run
is one `jobqueue` accepts, probes point at the health endpoints, grace periods outlast
the workers' shutdown grace, and KEDA watches the queue the workers consume."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from admin.cli import build_parser
from runtime.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def accepted(args: list[str]) -> None:
    """Parses as the entry point would; argparse exits on anything unknown."""
    build_parser(Settings()).parse_args(args)


def test_compose_runs_migrations_two_schedulers_and_a_scalable_worker_pool() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"postgres", "redis", "migrate", "scheduler-a", "scheduler-b", "worker"} <= set(services)
    for name in ("migrate", "scheduler-a", "scheduler-b", "worker"):
        accepted(services[name]["command"])
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis")
    assert services["worker"].get("container_name") is None  # --scale needs no fixed name
    assert services["scheduler-a"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "/readyz" in " ".join(services["worker"]["healthcheck"]["test"])


def _documents() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "jobqueue.yaml").read_text()))
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs)
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_kubernetes_manifests_probe_health_and_scale_workers_on_the_queue() -> None:
    docs = _documents()
    config = docs["ConfigMap/jobqueue"]["data"]
    grace = float(config["JOBQUEUE_SHUTDOWN_GRACE_SECONDS"])
    scheduler = docs["Deployment/jobqueue-scheduler"]["spec"]
    worker = docs["Deployment/jobqueue-worker"]["spec"]
    assert scheduler["replicas"] == 2
    assert worker["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    for spec in (scheduler, worker):
        [container] = spec["template"]["spec"]["containers"]
        accepted(container["args"])
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert int(config["JOBQUEUE_HEALTH_PORT"]) == container["ports"][0]["containerPort"]
    accepted(docs["Job/jobqueue-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"])
    [trigger] = docs["ScaledObject/jobqueue-worker"]["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == f"dramatiq:{config['JOBQUEUE_QUEUE']}"
    assert docs["ScaledObject/jobqueue-worker"]["spec"]["scaleTargetRef"]["name"] == (
        "jobqueue-worker"
    )


@pytest.mark.parametrize(
    "unit", ["jobqueue-scheduler.service", "jobqueue-worker.service", "jobqueue-web.service"]
)
def test_systemd_units_run_a_jobqueue_command(unit: str) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(DEPLOY / "systemd" / unit)
    command = shlex.split(parser["Service"]["ExecStart"])
    assert command[0].endswith("/jobqueue")
    accepted(command[1:])
    assert parser["Service"]["Restart"] == "always"


def test_the_web_process_is_deployed_with_its_health_checks() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    web = compose["services"]["web"]
    accepted(web["command"])
    assert "8000/readyz" in " ".join(web["healthcheck"]["test"])
    docs = {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "jobqueue.yaml").read_text())
    }
    [container] = docs["Deployment/jobqueue-web"]["spec"]["template"]["spec"]["containers"]
    accepted(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert docs["Service/jobqueue-web"]["spec"]["selector"]["role"] == "web"


def test_the_dockerfile_runs_as_a_user_with_the_jobqueue_entry_point() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert any(line.startswith("USER jobqueue") for line in lines)
    assert 'ENTRYPOINT ["jobqueue"]' in lines
    copied = {
        line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line
    }
    root = DEPLOY.parent
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").exists()} - {"tests", "bench"}
    assert packages <= copied  # every runtime package goes into the image
