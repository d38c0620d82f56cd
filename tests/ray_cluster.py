"""A real Ray cluster on this machine for tests and benchmarks: a head and worker nodes, all bound to 127.0.0.1,
each with its own short --temp-dir and `--num-cpus 1`.

Every node is a `ray start --block` child of this process, started with PR_SET_PDEATHSIG: if the test process dies,
each node gets SIGTERM and stops its own processes, so nothing outlives the tests. Nodes are ended by PID: `kill_node`
SIGKILLs a node's raylet (a node lost mid-run, as when a machine dies), `stop` ends every `ray start` it began.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECT_STORE_BYTES = 100 * 1024 * 1024
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    process: subprocess.Popen
    temp_dir: Path

    def raylet_pid(self) -> int | None:
        """The node's raylet, found by its unique temp dir among the `ray start` process's children."""
        for pid in _children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"/raylet") and any(str(self.temp_dir).encode() in a for a in cmdline):
                return pid
        return None


    def running(self, function: str) -> bool:
        """Whether a worker of this node is running a task of `function` now (Ray titles a busy worker
        `ray::FUNCTION`, an idle one `ray::IDLE`)."""
        raylet = self.raylet_pid()
        for pid in _children(raylet) if raylet else []:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title == f"ray::{function}".encode():
                return True
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@dataclass
class LocalCluster:
    port: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, args: list[str]) -> Node:
        temp_dir = Path(tempfile.mkdtemp(prefix="hray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "RAY_USAGE_STATS_ENABLED": "0"}
        # a small object store: results are small, and a CI container's /dev/shm may be 64 MB
        process = subprocess.Popen([*RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                    "--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", str(temp_dir), *args], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent)
        node = Node(process, temp_dir)
        self.nodes.append(node)
        return node

    def start(self, workers: int, timeout_s: float = 120.0) -> "LocalCluster":
        self._start(["--head", "--port", str(self.port), "--include-dashboard", "false", "--disable-usage-stats"])
        deadline = time.monotonic() + timeout_s
        while True:  # the workers can join once the head's GCS listens
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.nodes[0].process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the Ray head did not start on port {self.port}")
                time.sleep(0.1)
        for _ in range(workers):
            self._start(["--address", self.address])
        return self.wait_for(workers + 1, deadline)

    def add_worker(self, timeout_s: float = 120.0) -> "LocalCluster":
        self._start(["--address", self.address])
        return self.wait_for(len(self.nodes), time.monotonic() + timeout_s)

    def wait_for(self, n_nodes: int, deadline: float) -> "LocalCluster":
        """Until `n_nodes` nodes are registered with the head (a raylet that is up may not be yet)."""
        import ray

        ray.init(address=self.address, log_to_driver=False, logging_level="WARNING", configure_logging=False)
        try:
            while len([n for n in ray.nodes() if n["Alive"]]) < n_nodes:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the Ray cluster at {self.address} did not reach {n_nodes} nodes")
                time.sleep(0.2)
        finally:
            ray.shutdown()
        return self

    def kill_node(self, node: Node) -> None:
        """SIGKILL the node's raylet (its workers die with it): the node is lost, as when its machine dies."""
        pid = node.raylet_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        for node in reversed(self.nodes):
            try:
                node.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
            shutil.rmtree(node.temp_dir, ignore_errors=True)
