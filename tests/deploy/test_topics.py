"""One topic list (streams/topics.py) feeds the code and the manifests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from streams.topics import ALL_TOPICS
from tests.deploy.rendering import DEPLOY, of_kind, one, settings_env


def _gen_topics():
    spec = importlib.util.spec_from_file_location("gen_topics", DEPLOY / "gen_topics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_topics_yaml_is_in_sync_with_topic_list():
    proc = subprocess.run([sys.executable, str(DEPLOY / "gen_topics.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_check_mode_detects_drift(tmp_path):
    stale = tmp_path / "topics.yaml"
    stale.write_text(_gen_topics().render().replace("retention.ms: 21600000", "retention.ms: 1"))
    proc = subprocess.run([sys.executable, str(DEPLOY / "gen_topics.py"), "--check", "--out", str(stale)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "out of date" in proc.stderr


def test_every_topic_is_declared_with_its_retention(rendered):
    topics = {t["spec"]["topicName"]: t for t in of_kind(rendered["cluster"], "KafkaTopic")}
    assert set(topics) == {t.name for t in ALL_TOPICS}
    for t in ALL_TOPICS:
        cfg = topics[t.name]["spec"]["config"]
        if t.compacted:
            assert cfg["cleanup.policy"] == "compact" and "retention.ms" not in cfg
        else:
            assert cfg["retention.ms"] == int(t.retention_h * 3600 * 1000)
        assert topics[t.name]["metadata"]["labels"]["strimzi.io/cluster"] == \
            one(rendered["cluster"], "Kafka", "iohwatch")["metadata"]["name"]


def test_partitions_agree_and_bound_the_autoscaler(rendered):
    objs = rendered["cluster"]
    partitions = {t["spec"]["partitions"] for t in of_kind(objs, "KafkaTopic")}
    assert len(partitions) == 1
    (n,) = partitions
    assert int(settings_env(objs)["IOHWATCH_TOPIC_PARTITIONS"]) == n
    so = one(objs, "ScaledObject", "iohwatch-agent")
    lag_topic = so["spec"]["triggers"][0]["metadata"]["topic"]
    assert lag_topic in {t.name for t in ALL_TOPICS}
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] <= n
    assert so["spec"]["fallback"]["replicas"] <= so["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("overlay", ["edge", "cluster"])
def test_replication_fits_the_brokers(rendered, overlay):
    objs = rendered[overlay]
    if overlay == "cluster":
        brokers = sum(p["spec"]["replicas"] for p in of_kind(objs, "KafkaNodePool") if "broker" in p["spec"]["roles"])
        for t in of_kind(objs, "KafkaTopic"):
            assert t["spec"]["replicas"] <= brokers
            assert t["spec"]["config"]["min.insync.replicas"] < t["spec"]["replicas"]
    else:
        assert one(objs, "StatefulSet", "kafka")["spec"]["replicas"] == 1


def _grants(user: dict) -> list[tuple[str, str, str, set[str]]]:
    return [(a["resource"]["type"], a["resource"].get("name", ""), a["resource"].get("patternType", "literal"),
             set(a["operations"])) for a in user["spec"]["authorization"]["acls"]]


def _allowed(user: dict, rtype: str, name: str, op: str) -> bool:
    for t, n, pattern, ops in _grants(user):
        if t != rtype or not ({op, "All"} & ops):
            continue
        if (pattern == "literal" and n in (name, "*")) or (pattern == "prefix" and name.startswith(n)):
            return True
    return False


def test_acls_follow_the_data_flow(rendered):
    users = {u["metadata"]["name"]: u for u in of_kind(rendered["cluster"], "KafkaUser")}
    agent, ingest, consumer, keda = (users[n] for n in
                                     ("iohwatch-agent", "iohwatch-ingest", "iohwatch-consumer", "iohwatch-keda"))
    names = [t.name for t in ALL_TOPICS]
    # ingest only writes what arrives from the bedside, reads nothing
    assert {n for n in names if _allowed(ingest, "topic", n, "Write")} == {"hl7.raw", "waveform.abp", "dlq.hl7"}
    assert not any(_allowed(ingest, "topic", n, "Read") for n in names)
    # every topic is visible to the services that run ensure_topics at start
    assert all(_allowed(u, "topic", n, "Describe") for u in (agent, ingest) for n in names)
    # the agent reads every input, writes every output and every dead-letter topic
    for n in ("hl7.raw", "waveform.abp", "observations", "patients", "events"):
        assert _allowed(agent, "topic", n, "Read"), n
    for n in ("observations", "ioh.forecasts", "ioh.beliefs", "ioh.alerts", "dlq.hl7",
              "dlq.waveform.abp", "dlq.observations"):
        assert _allowed(agent, "topic", n, "Write"), n
    assert not _allowed(agent, "topic", "hl7.raw", "Write")
    assert _allowed(agent, "group", settings_env(rendered["cluster"])["IOHWATCH_APP_ID"], "Read")
    # downstream subscribers read results only
    assert {n for n in names if _allowed(consumer, "topic", n, "Read")} == {"ioh.forecasts", "ioh.beliefs", "ioh.alerts"}
    assert not any(_allowed(consumer, "topic", n, "Write") for n in names)
    # KEDA only describes
    assert all(ops == {"Describe"} for *_, ops in _grants(keda))
