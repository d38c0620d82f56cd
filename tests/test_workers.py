"""Worker processes of a run never outlive it, even when it is killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.engine.workers import alive

ROOT = Path(__file__).resolve().parents[1]

PARENT = """
import os, sys, time
from harness.engine.workers import worker_pool

def stay():
    time.sleep(120)
    return os.getpid()

if __name__ == "__main__":
    with worker_pool(2) as pool:
        futures = [pool.submit(stay) for _ in range(2)]
        time.sleep(1.0)
        print(" ".join(str(p) for p in pool._processes), flush=True)
        futures[0].result()
"""


def test_workers_exit_when_the_run_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(alive(p) for p in workers)
    proc.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    still = [p for p in workers if alive(p)]
    for p in still:
        os.kill(p, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not still, f"workers {still} outlived their killed parent"


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while alive(proc.pid) and time.monotonic() < deadline:  # exited, not reaped yet: a zombie
        time.sleep(0.05)
    assert not alive(proc.pid) and proc.poll() == 0
    assert alive(os.getpid())
