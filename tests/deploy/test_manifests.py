"""Both overlays render, every object is valid, and the policies that matter hold."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agent.settings import env_table
from tests.deploy.rendering import DEPLOY, OVERLAYS, of_kind, one, pod_specs, settings_env

K8S_VERSION = "1.32.0"  # the oldest Kubernetes these manifests are written for
SCHEMAS = DEPLOY / "schemas"
CRD_GROUPS = ("kafka.strimzi.io", "keda.sh", "monitoring.coreos.com")
INFERENCE_CONTAINERS = {("iohwatch-agent", "agent"), ("iohwatch-agent", "prepare-engines")}


def _schema_for(obj: dict) -> dict:
    group, version = obj["apiVersion"].split("/")
    path = SCHEMAS / f"{group}_{version}_{obj['kind'].lower()}.schema.yaml"
    assert path.exists(), f"no vendored schema for {obj['apiVersion']} {obj['kind']} (looked for {path.name})"
    return yaml.safe_load(path.read_text())


def _is_crd_object(obj: dict) -> bool:
    return obj["apiVersion"].split("/")[0] in CRD_GROUPS


# --- validity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate_against_kubernetes_schemas(rendered, overlay):
    core = [o for o in rendered[overlay] if not _is_crd_object(o)]
    assert len(core) >= 10
    errors = []
    for obj in core:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_objects_validate_against_vendored_crd_schemas(rendered, overlay):
    errors = []
    for obj in filter(_is_crd_object, rendered[overlay]):
        for err in jsonschema.Draft7Validator(_schema_for(obj)).iter_errors(obj):
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {list(err.absolute_path)}: {err.message}")
    assert not errors, "\n".join(errors)


def test_vendored_schemas_are_valid_json_schemas():
    files = sorted(SCHEMAS.glob("*.schema.yaml"))
    assert {f.name.split("_")[-1].split(".")[0] for f in files} >= {
        "kafka", "kafkanodepool", "kafkatopic", "kafkauser", "scaledobject", "servicemonitor"}
    readme = (SCHEMAS / "README.md").read_text()
    for f in files:
        jsonschema.Draft7Validator.check_schema(yaml.safe_load(f.read_text()))
        assert f.name in readme, f"{f.name} has no version/source line in schemas/README.md"


def test_validators_reject_broken_objects(rendered):
    """The checks above can fail: typical mistakes are caught by each validator."""
    objs = rendered["cluster"]
    dep = copy.deepcopy(one(objs, "Deployment", "iohwatch-agent"))
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/healthz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)

    cases = [
        (one(objs, "KafkaTopic", "waveform-abp"), ["spec", "partitions"], 0),
        (one(objs, "KafkaTopic", "waveform-abp"), ["spec", "partition"], 3),
        (one(objs, "KafkaUser", "iohwatch-agent"), ["spec", "authentication", "type"], "scram-sha-256"),
        (one(objs, "Kafka", "iohwatch"), ["spec", "kafka", "listeners", 0, "name"], "TLS_Listener"),
        (one(objs, "KafkaNodePool", "dual-role"), ["spec", "roles", 0], "zookeeper"),
        (one(objs, "ScaledObject", "iohwatch-agent"), ["spec", "maxReplicas"], 3),
        (one(objs, "ServiceMonitor", "iohwatch"), ["spec", "endpoints", 0, "interval"], "15 seconds"),
    ]
    for obj, path, value in cases:
        broken = copy.deepcopy(obj)
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        errs = list(jsonschema.Draft7Validator(_schema_for(broken)).iter_errors(broken))
        assert errs, f"{obj['kind']} with {path}={value!r} passed its schema"


# --- policies -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_requested_where_inference_runs(rendered, overlay):
    found = set()
    for workload, spec in pod_specs(rendered[overlay]):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            key = (workload["metadata"]["name"], c["name"])
            gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            if key in INFERENCE_CONTAINERS:
                assert gpus == 1, f"{overlay}: {key} runs inference without nvidia.com/gpu: 1"
                found.add(key)
            else:
                assert gpus is None, f"{overlay}: {key} holds a GPU but runs no inference"
    assert found == INFERENCE_CONTAINERS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_resources_and_non_root(rendered, overlay):
    for workload, spec in pod_specs(rendered[overlay]):
        name = workload["metadata"]["name"]
        assert spec.get("enableServiceLinks") is False, f"{name}: service links inject KAFKA_* variables"
        assert spec.get("automountServiceAccountToken") is False, f"{name}: no API access needed"
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, f"{name}: pod not runAsNonRoot"
        assert pod_sc.get("runAsUser", 1) != 0
        for c in spec["containers"]:
            assert "livenessProbe" in c and "readinessProbe" in c, f"{name}/{c['name']}: missing probe"
        for c in spec["containers"] + spec.get("initContainers", []):
            res = c.get("resources", {})
            assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{name}/{c['name']}: requests"
            assert {"cpu", "memory"} <= set(res.get("limits", {})), f"{name}/{c['name']}: limits"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{c['name']}"
            if workload["metadata"]["labels"].get("app.kubernetes.io/part-of") == "iohwatch" \
                    and name.startswith("iohwatch-"):
                assert sc.get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}: writable root"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_probes_use_health_endpoints(rendered, overlay):
    agent = one(rendered[overlay], "Deployment", "iohwatch-agent")
    c = next(c for c in agent["spec"]["template"]["spec"]["containers"] if c["name"] == "agent")
    port = next(p for p in c["ports"] if p["name"] == c["livenessProbe"]["httpGet"]["port"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = settings_env(rendered[overlay])
    assert str(port["containerPort"]) == env["IOHWATCH_WEB_PORT"]
    assert env["IOHWATCH_WEB_HOST"] == "0.0.0.0", "probes from the kubelet cannot reach a loopback bind"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(rendered, overlay):
    for workload, spec in pod_specs(rendered[overlay]):
        for c in spec["containers"] + spec.get("initContainers", []):
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            assert ":" in last or "@sha256:" in image, f"{image} has no tag"
            assert not image.endswith(":latest"), f"{image} uses latest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_default_deny_and_cover_every_component(rendered, overlay):
    objs = rendered[overlay]
    policies = of_kind(objs, "NetworkPolicy")
    deny = one(objs, "NetworkPolicy", "iohwatch-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    selected = set(deny["spec"]["podSelector"]["matchExpressions"][0]["values"])
    components = {w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
                  for w, _ in pod_specs(objs) if w["metadata"]["name"].startswith("iohwatch-")}
    assert components == selected
    # ingest is reachable on its listener ports only, metrics on 6066 only
    ports = {p["port"] for p in one(objs, "NetworkPolicy", "iohwatch-allow-hospital-to-ingest")
             ["spec"]["ingress"][0]["ports"]}
    assert ports == {2575, 3000}
    assert len(policies) >= 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_recommended_labels(rendered, overlay):
    for obj in rendered[overlay]:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "iohwatch", f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] not in ("ConfigMap", "Secret"):
            assert "app.kubernetes.io/name" in labels, f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_keys_are_real_settings(rendered, overlay):
    known = {row[0] for row in env_table()}
    env = settings_env(rendered[overlay])
    unknown = set(env) - known
    assert not unknown, f"ConfigMap sets variables no setting reads: {sorted(unknown)}"
    for _, spec in pod_specs(rendered[overlay]):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith(("IOHWATCH_", "KAFKA_")) and "image" in c \
                        and c["image"].split("/")[-1].startswith("iohwatch"):
                    assert e["name"] in known, e["name"]


def test_cluster_secrets_come_from_secrets(rendered):
    objs = rendered["cluster"]
    env = settings_env(objs)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "KAFKA_SASL_PASSWORD" not in env
    users = {u["metadata"]["name"] for u in of_kind(objs, "KafkaUser")}
    for name in ("iohwatch-agent", "iohwatch-ingest-mllp", "iohwatch-ingest-vitalrecorder"):
        c = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        by_name = {e["name"]: e for e in c["env"]}
        ref = by_name["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] in users and ref["key"] == "password"
        assert by_name["KAFKA_SASL_USERNAME"]["value"] == ref["name"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert str(Path(env["KAFKA_SSL_CAFILE"]).parent) in mounts


def test_cluster_scaling_and_disruption(rendered):
    objs = rendered["cluster"]
    agent = one(objs, "Deployment", "iohwatch-agent")
    assert "replicas" not in agent["spec"], "KEDA owns the replica count"
    so = one(objs, "ScaledObject", "iohwatch-agent")
    assert so["spec"]["scaleTargetRef"]["name"] == "iohwatch-agent"
    trig = so["spec"]["triggers"][0]
    assert trig["type"] == "kafka"
    assert trig["metadata"]["consumerGroup"] == settings_env(objs)["IOHWATCH_APP_ID"]
    auth = one(objs, "TriggerAuthentication", trig["authenticationRef"]["name"])
    secret_names = {r["name"] for r in auth["spec"]["secretTargetRef"]}
    users = {u["metadata"]["name"] for u in of_kind(objs, "KafkaUser")}
    generated = {s["metadata"]["name"] for s in of_kind(objs, "Secret")}
    assert secret_names <= users | generated | {"iohwatch-cluster-ca-cert"}
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in of_kind(objs, "PodDisruptionBudget")}
    assert pdbs == {"agent", "ingest-mllp", "ingest-vitalrecorder"}
    for name in ("iohwatch-agent", "iohwatch-ingest-mllp", "iohwatch-ingest-vitalrecorder"):
        aff = one(objs, "Deployment", name)["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        assert aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] \
            == "kubernetes.io/hostname"
    sm = one(objs, "ServiceMonitor", "iohwatch")
    matched = [s for s in of_kind(objs, "Service")
               if all(s["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())]
    assert {s["metadata"]["name"] for s in matched} == {
        "iohwatch-agent-metrics", "iohwatch-ingest-mllp-metrics", "iohwatch-ingest-vitalrecorder-metrics"}
    for s in matched:
        assert s["spec"]["type"] == "ClusterIP"
        assert {p["name"] for p in s["spec"]["ports"]} == {"http-metrics"}


def test_edge_has_single_kraft_broker(rendered):
    objs = rendered["edge"]
    sts = one(objs, "StatefulSet", "kafka")
    assert sts["spec"]["replicas"] == 1
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    svc_port = one(objs, "Service", "kafka")["spec"]["ports"][0]["port"]
    assert settings_env(objs)["KAFKA_BOOTSTRAP_SERVERS"] == f"kafka:{svc_port}"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka:{svc_port}"
    assert one(objs, "Deployment", "iohwatch-agent")["spec"]["strategy"]["type"] == "Recreate"
    for name, port in (("iohwatch-mllp", 2575), ("iohwatch-vitalrecorder", 3000)):
        svc = one(objs, "Service", name)["spec"]
        assert svc["type"] == "LoadBalancer" and svc["loadBalancerSourceRanges"], name
        assert [p["port"] for p in svc["ports"]] == [port], "only the listener is exposed outside"
