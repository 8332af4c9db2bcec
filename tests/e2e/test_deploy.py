"""The shipped deployment files hold: the Kubernetes manifests (base and each overlay, the
overlays' patches merged as kustomize merges them) against Kubernetes' own schemas
(kubernetes-validate, from PyPI), the CRD kinds (ServiceMonitor, KServe's ServingRuntime and
InferenceService) against the schemas in deploy/kubernetes/schemas, the numbers that must agree
with each other and with Quiver (ports, probes, grace period, the autoscaling metric), the
Dockerfile's shape, and `haproxy -c` on the HAProxy config (nginx's is checked in
test_load_balancer.py)."""
import copy
import json
import os
import pathlib
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml
from dockerfile_parse import DockerfileParser

from conftest import FIXTURE_MODELS, ROOT, Server

KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = ROOT / "deploy" / "kserve"
SCHEMAS = {"ServiceMonitor": "servicemonitor.json", "ServingRuntime": "servingruntime.json",
           "InferenceService": "inferenceservice.json"}
K8S_VERSION = "1.33.0"


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def merge(base, patch):
    """A strategic merge patch as kustomize applies these: maps merge, lists of named items
    (containers, env, volumes, volumeMounts, ports) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        merged = [copy.deepcopy(i) for i in base]
        for item in patch:
            same = [n for n, b in enumerate(merged) if b["name"] == item["name"]]
            if same:
                merged[same[0]] = merge(merged[same[0]], item)
            else:
                merged.append(item)
        return merged
    return patch


def build(directory):
    """What `kustomize build directory` makes of these kustomizations (resources, patches and
    common labels; the only features they use)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources += build(path) if path.is_dir() else documents(path)
    for patch in kustomization.get("patches", []):
        for change in documents(directory / patch["path"]):
            for n, resource in enumerate(resources):
                if (resource["kind"], resource["metadata"]["name"]) == (change["kind"], change["metadata"]["name"]):
                    resources[n] = merge(resource, change)
    for labels in kustomization.get("labels", []):
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(labels["pairs"])
    return resources


def overlays():
    return sorted(p.name for p in (KUBERNETES / "overlays").iterdir())


@pytest.mark.parametrize("overlay", overlays())
def test_kubernetes_manifests_are_valid(overlay):
    resources = build(KUBERNETES / "overlays" / overlay)
    kinds = sorted(r["kind"] for r in resources)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "Service", "ServiceMonitor"], kinds
    for resource in resources:
        schema = SCHEMAS.get(resource["kind"])
        if schema:
            jsonschema.validate(resource, json.loads((KUBERNETES / "schemas" / schema).read_text()))
        else:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def by_kind(resources):
    return {r["kind"]: r for r in resources}


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", overlays())
def test_the_numbers_agree(overlay):
    kinds = by_kind(build(KUBERNETES / "overlays" / overlay))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    # The grace period covers the preStop pause, the shutdown delay and the drain.
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > (
        pre_stop + float(env["QUIVER_SHUTDOWN_DELAY_SECS"]) + float(env["QUIVER_EXIT_TIMEOUT_SECS"]))
    # Quiver's default ports, named as the probes and the Service use them.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8501, "grpc": 8500}
    service = {p["name"]: p for p in kinds["Service"]["spec"]["ports"]}
    assert {n: p["targetPort"] for n, p in service.items()} == {"http": "http", "grpc": "grpc"}
    assert service["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    # The autoscaler's metric is the one the adapter rule makes, a metric Quiver documents.
    metric = kinds["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])["rules"]
    assert rules[0]["name"]["as"] == metric == "quiver_server_inflight_requests"
    assert f"| `{metric}` | gauge |" in (ROOT / "docs" / "metrics.md").read_text()
    assert kinds["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_probes_and_arguments_are_real(tmp_path):
    """The probe paths answer 200 on a real server started with the manifests' arguments (their
    repository and ports swapped for the test's), and KServe's runtime arguments are accepted."""
    (container,) = by_kind(build(KUBERNETES / "base"))["Deployment"]["spec"]["template"]["spec"]["containers"]
    runtime = documents(KSERVE / "servingruntime.yaml")[0]
    (kserve,) = runtime["spec"]["containers"]
    for args in (container["args"], kserve["args"]):
        assert args[0] == "serve"
        kept, skip = [], False
        for arg in args[1:]:
            if skip:
                skip = False
                continue
            name = arg.split("=", 1)[0]
            if name in ("--model-repository", "--rest-port", "--grpc-port"):
                skip = "=" not in arg
                continue
            kept.append(arg)
        server = Server(FIXTURE_MODELS, *kept, env={"QUIVER_DATA_DIR": str(tmp_path)})
        try:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = container[probe]["httpGet"]["path"]
                assert requests.get(server.url + path, timeout=10).status_code == 200, path
            assert requests.get(server.url + kserve["readinessProbe"]["httpGet"]["path"],
                                timeout=10).status_code == 200
        finally:
            server.stop()


def test_kserve_manifests_are_valid():
    for path in sorted(KSERVE.glob("*.yaml")):
        for document in documents(path):
            schema = json.loads((KUBERNETES / "schemas" / SCHEMAS[document["kind"]]).read_text())
            jsonschema.validate(document, schema)
    runtime = documents(KSERVE / "servingruntime.yaml")[0]
    (container,) = runtime["spec"]["containers"]
    # KServe sends HTTP to 8080 and gRPC to 9000 (the one port it lets a runtime declare).
    assert "--rest-port=8080" in container["args"] and "--grpc-port=9000" in container["args"]
    assert container["ports"] == [{"containerPort": 9000, "name": "h2c", "protocol": "TCP"}]
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "onnx"
    service = documents(KSERVE / "inferenceservice.yaml")[0]
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


def test_the_dockerfile():
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(stages) >= 2, "multi-stage: a build stage, then a slim runtime"
    final = parser.structure[[n for n, i in enumerate(parser.structure) if i["instruction"] == "FROM"][-1]:]
    instructions = {}
    for item in final:
        instructions.setdefault(item["instruction"], []).append(item["value"])
    user = instructions["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "runs as a non-root user"
    assert "/v2/health/ready" in instructions["HEALTHCHECK"][-1]
    copies = " ".join(instructions["COPY"])
    assert "target/release/quiver" in copies and "libonnxruntime" in copies and "examples/models" in copies
    assert set(" ".join(instructions["EXPOSE"]).split()) == {"8500", "8501"}
    # What the image's ENV names are flags Quiver reads.
    # With no QUIVER_ variable set, so that --help shows none of their values.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    help_text = subprocess.run([os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver")),
                                "serve", "--help"], capture_output=True, text=True, check=True,
                               env=clean).stdout
    help_text = " ".join(help_text.split())
    for env in parser.envs:
        if env.startswith("QUIVER_"):
            assert f"[env: {env}=]" in help_text, env


def test_haproxy_config_is_valid():
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        message = "haproxy not found (apt-get install haproxy; scripts/test.sh does)"
        if os.environ.get("QUIVER_REQUIRE_NGINX") == "1":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([haproxy, "-c", "-f", str(ROOT / "deploy" / "haproxy" / "haproxy.cfg")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
