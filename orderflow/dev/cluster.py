"""A private Kafka KRaft cluster of N brokers on this machine (dev/test only), beside the stack's single broker:
each broker is also a controller (static quorum of all N), with its own ports, data and log under one
directory. The chaos suite runs scenario 12 on three of them (replication 3, min.insync.replicas 2) and
scenario 11 on one whose clients go through a delaying proxy (`advertised` ports).

Production-like settings: topics are never auto-created (a service must create them as configured or
refuse to start), internal topics are replicated like the project's, no unclean leader election."""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orderflow.dev import stack

HEAP = ("-Xms256m", "-Xmx512m")  # three brokers on a shared two-core machine


@dataclass(frozen=True)
class Broker:
    """One broker+controller of the cluster."""

    node_id: int
    port: int  # where it listens for clients
    advertised: int  # what it tells clients to connect to: its own port, or a proxy's in front of it
    controller: int


@dataclass
class KafkaCluster:
    """N brokers under `home`; `replication` and `min_insync` apply to the internal topics and broker defaults."""

    home: Path
    brokers: list[Broker]
    replication: int
    min_insync: int
    cluster_id: str = stack.KAFKA_CLUSTER_ID
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, home: Path, count: int = 3, *, advertised: list[int] | None = None, min_insync: int | None = None
    ) -> "KafkaCluster":
        """A cluster of `count` brokers on free ports (replication = count, min.insync.replicas = count - 1
        unless given, at least 1); `advertised` gives each broker the client port it announces."""
        if count < 1:
            raise ValueError(f"a cluster needs at least one broker, not {count}")
        if advertised is not None and len(advertised) != count:
            raise ValueError(f"{len(advertised)} advertised ports for {count} brokers")
        base = stack.unused_port(2 * count)
        brokers = [
            Broker(i + 1, base + i, advertised[i] if advertised else base + i, base + count + i) for i in range(count)
        ]
        insync = min_insync if min_insync is not None else max(1, count - 1)
        return cls(home, brokers, replication=count, min_insync=insync)

    @property
    def bootstrap(self) -> str:
        """The clients' bootstrap list (the advertised addresses)."""
        return ",".join(f"{stack.HOST}:{b.advertised}" for b in self.brokers)

    def broker(self, node_id: int) -> Broker:
        """The broker with that node id."""
        return next(b for b in self.brokers if b.node_id == node_id)

    def log_path(self, node_id: int) -> Path:
        """Where the broker logs (log4j and the JVM's own output)."""
        return self.home / f"broker-{node_id}" / "kafka.log"

    def _properties(self, b: Broker) -> str:
        voters = ",".join(f"{x.node_id}@{stack.HOST}:{x.controller}" for x in self.brokers)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(b.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{stack.HOST}:{b.port},CONTROLLER://{stack.HOST}:{b.controller}",
            "advertised.listeners": f"PLAINTEXT://{stack.HOST}:{b.advertised}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.home / f"broker-{b.node_id}" / "data"),
            "num.partitions": "6",
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(self.min_insync),
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": str(self.replication),
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(self.min_insync),
            "share.coordinator.state.topic.replication.factor": str(self.replication),
            "share.coordinator.state.topic.min.isr": str(self.min_insync),
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _command(self, b: Broker, *main: str) -> list[str]:
        logs = f"-Dkafka.logs.dir={self.log_path(b.node_id).parent}"
        out = []
        for arg in stack._kafka_command(stack.ensure_kafka(), *main):
            if arg.startswith("-Dkafka.logs.dir="):
                out.append(logs)
            elif arg not in stack.KAFKA_HEAP:
                out.append(arg)
        return [out[0], *HEAP, *out[1:]]

    def _config(self, b: Broker) -> Path:
        path = self.home / f"broker-{b.node_id}" / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._properties(b))
        return path

    def _launch(self, b: Broker) -> None:
        """Launch one broker without waiting for it (formatting its storage the first time)."""
        if b.node_id in self.procs and self.procs[b.node_id].poll() is None:
            return
        config = self._config(b)
        if not (self.home / f"broker-{b.node_id}" / "data" / "meta.properties").is_file():
            fmt = self._command(b, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", self.cluster_id)
            with self.log_path(b.node_id).open("ab") as log:
                done = subprocess.run([*fmt, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, check=False)
            if done.returncode:
                raise stack.StackError(f"broker {b.node_id}: formatting failed; see {self.log_path(b.node_id)}")
        with self.log_path(b.node_id).open("ab") as log:
            self.procs[b.node_id] = subprocess.Popen(
                self._command(b, "kafka.Kafka", str(config)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one broker (again) and wait until it answers."""
        self._launch(self.broker(node_id))
        self._wait_answers(self.broker(node_id), timeout)

    def _wait_answers(self, b: Broker, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[b.node_id].poll() is not None:
                raise stack.StackError(f"broker {b.node_id} exited during start-up; see {self.log_path(b.node_id)}")
            if stack._port_open(b.port):
                try:
                    asyncio.run(stack._kafka_answers(f"{stack.HOST}:{b.port}"))
                    return
                except Exception:  # listening but not serving yet: any client error means "try again"
                    pass
            time.sleep(0.5)
        raise stack.StackError(
            f"broker {b.node_id} did not answer within {timeout:.0f}s; see {self.log_path(b.node_id)}"
        )

    def up(self, timeout: float = 120.0) -> str:
        """Start every broker (their controllers need a quorum, so all are launched before waiting on any);
        returns the bootstrap list."""
        for b in self.brokers:
            self._launch(b)
        for b in self.brokers:
            self._wait_answers(b, timeout)
        return self.bootstrap

    def kill(self, node_id: int) -> None:
        """SIGKILL one broker at once (fault injection)."""
        proc = self.procs.pop(node_id, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def down(self, remove: bool = True) -> None:
        """Stop every broker (SIGTERM, SIGKILL after 20 s) and, by default, delete the cluster's directory."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for node_id in list(self.procs):
            try:
                self.procs[node_id].wait(20)
            except subprocess.TimeoutExpired:
                self.kill(node_id)
        self.procs.clear()
        if remove:
            shutil.rmtree(self.home, ignore_errors=True)
