"""deploy/kubernetes renders with `kubectl kustomize` (base and the example overlay), names only
real settings, probes real endpoints, and keeps the pod's promises: three replicas, non-root on a
read-only root, a grace period longer than the preStop and SHUTDOWN_GRACE_SECONDS together, and
DATABASE_URL and API_TOKENS required from the Secret."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = {
    "base": ROOT / "deploy" / "kubernetes" / "base",
    "overlay": ROOT / "deploy" / "kubernetes" / "overlays" / "external-postgres",
}
SETTINGS = {name.upper() for name in Settings.model_fields}
# The providers' own keys, which litellm reads from the environment (as the compose test allows).
PROVIDER_KEYS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"}
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed (Debian's package kubernetes-client; .ci/run installs it "
    "as root): the Kubernetes manifests cannot be rendered",
)


def render(name: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZATIONS[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(documents, "Deployment")
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def environment_names(documents: list[dict[str, Any]]) -> set[str]:
    """Every variable the container gets: its env, and the keys of the ConfigMaps and Secrets."""
    names = {variable["name"] for variable in container(documents).get("env", [])}
    for document in of_kind(documents, "ConfigMap") + of_kind(documents, "Secret"):
        names |= set(document.get("data", {}))
    return names


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_variable_is_a_setting(name: str) -> None:
    names = environment_names(render(name))
    assert "DATABASE_URL" in names
    assert names - SETTINGS - PROVIDER_KEYS == set()


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_probe_is_an_endpoint_of_the_app(name: str) -> None:
    probes = {
        kind: container(render(name))[kind]["httpGet"]["path"]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    assert probes["livenessProbe"] == "/healthz"
    assert probes["readinessProbe"] == "/readyz"
    # The app's endpoints, as its OpenAPI document lists them (GET ones: what a probe sends).
    paths = create_app(Settings()).openapi()["paths"]
    assert all("get" in paths.get(path, {}) for path in probes.values()), probes


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_pod_drains_within_its_grace_period_as_non_root(name: str) -> None:
    documents = render(name)
    [deployment] = of_kind(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    [config] = of_kind(documents, "ConfigMap")
    grace = float(config["data"]["SHUTDOWN_GRACE_SECONDS"])
    main = container(documents)
    prestop = main["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(prestop[1]) + grace
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    # What the service writes (DATA_DIR's outbox, temporary files) is on emptyDir volumes.
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert mounts == {"/data", "/tmp"}
    assert {"requests", "limits"} <= set(main["resources"])
    required = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in main["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert set(required) == {"DATABASE_URL", "API_TOKENS"}
    assert not any(reference.get("optional") for reference in required.values())
    [budget] = of_kind(documents, "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    [service] = of_kind(documents, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_overlay_supplies_the_secret_and_a_direct_url_beside_the_pooler() -> None:
    documents = render("overlay")
    [secret] = of_kind(documents, "Secret")
    [config] = of_kind(documents, "ConfigMap")
    assert {"DATABASE_URL", "API_TOKENS", "LISTEN_DATABASE_URL"} <= set(secret["data"])
    assert config["data"]["DATABASE_POOLER"] == "transaction"
    main = container(documents)
    references = {
        source["secretRef"]["name"] for source in main["envFrom"] if "secretRef" in source
    }
    references |= {v["valueFrom"]["secretKeyRef"]["name"] for v in main["env"]}
    assert references == {secret["metadata"]["name"]}
    # The settings as the pod would get them are valid together.
    Settings(
        **{key.lower(): value for key, value in config["data"].items()},
        database_url="x",
        listen_database_url="y",
    )
