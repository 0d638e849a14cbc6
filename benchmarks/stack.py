"""The processes a benchmark run needs — emulator, sfsync worker, anchor worker, profiler — and /proc readings.

Every process is started in its own session (process group) and stopped with
`ManagedProcess.terminate`, which signals the whole group, so nothing outlives the run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from events.redis_conn import free_port
from salesforce_emulator.org import DEFAULT_TOKEN
from workers.local.stack import ManagedProcess, start_worker

from benchmarks import bare_app

#: the repository root, put on PYTHONPATH so `benchmarks.bare_app` imports in a worker
ROOT = Path(__file__).resolve().parent.parent
#: seconds a started process gets to answer
START_TIMEOUT = 60.0
_TICKS = os.sysconf("SC_CLK_TCK")


def with_root(env: dict[str, str]) -> dict[str, str]:
    path = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


@dataclass
class Emulator:
    process: ManagedProcess
    url: str
    token: str


def start_emulator(env: dict[str, str]) -> Emulator:
    """The emulator in its own process, so its CPU is not in the publisher's GIL."""
    port = free_port()
    process = ManagedProcess([sys.executable, "-m", "salesforce_emulator", "--port", str(port)],
                             with_root(env)).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if not process.running:
                raise RuntimeError(f"the emulator exited:\n{process.output()[-3000:]}")
            try:
                if requests.get(f"{url}/_admin/features", timeout=1).ok:
                    return Emulator(process, url, DEFAULT_TOKEN)
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the emulator did not answer on {url} in {START_TIMEOUT}s")
    except BaseException:
        process.kill()
        raise


def start_sfsync_worker(env: dict[str, str], concurrency: int) -> ManagedProcess:
    return start_worker(with_root(env), concurrency=concurrency)


def start_bare_worker(env: dict[str, str], concurrency: int) -> ManagedProcess:
    argv = [sys.executable, "-m", "celery", "--app", "benchmarks.bare_app:app", "worker",
            "--queues", ",".join(bare_app.QUEUES.values()), "--concurrency", str(concurrency), "--pool", "prefork",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--hostname", f"bench-bare-{os.getpid()}@%h"]
    process = ManagedProcess(argv, with_root(env)).start()
    try:
        process.wait_for(" ready.", timeout=START_TIMEOUT)
    except BaseException:
        process.kill()
        raise
    return process


# --- /proc readings ------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (a prefork worker: the main process and its pool children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of one process, in kB; {} when it is gone."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0])
    except OSError:
        return {}
    return found


def tree_memory(pid: int) -> list[dict[str, int]]:
    rows = []
    for p in process_tree(pid):
        mem = memory_kb(p)
        if mem:
            rows.append({"pid": p, "rss_kb": mem.get("VmRSS", 0), "hwm_kb": mem.get("VmHWM", 0)})
    return rows


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def pool_cpu(pid: int) -> float:
    """CPU time of a prefork worker's pool children only (the main process is the consumer)."""
    return sum(cpu_seconds(p) for p in process_tree(pid) if p != pid)


# --- profiler ------------------------------------------------------------------------------

@dataclass
class Profiler:
    """py-spy recording one process tree in collapsed-stack ("raw") form, stopped with SIGINT."""

    proc: subprocess.Popen
    output: Path

    @classmethod
    def start(cls, pid: int, output: Path, *, rate: int = 100) -> "Profiler | None":
        exe = Path(sys.executable).with_name("py-spy")
        if not exe.exists():
            return None
        # --nonblocking: sampling must not pause the worker and distort what it measures
        argv = [str(exe), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(rate),
                "--format", "raw", "--output", str(output), "--duration", "3600"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(proc, output)

    def stop(self, timeout: float = 30.0) -> Path | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.output if self.output.exists() else None


#: leaf frames of a process waiting, not working: left out so shares are of busy time
IDLE_LEAVES = ("poll (", "select (", "epoll", "sleep (", "wait (", "_wait_for_tstate_lock", "accept (")
#: our own code, whose inclusive time says which sfsync function to optimise
PROJECT_FRAME = re.compile(r"\((workers|events|schemas|salesforce_emulator)/")
#: entry points that enclose every sample, so their inclusive share says nothing
#: frames of the entry points themselves (the CLI, the emulator's server), which every stack holds
ENTRY_FRAMES = ("(workers/cli/__init__.py:", "(salesforce_emulator/server.py:")


def top_frames(collapsed: Path, limit: int = 12) -> dict[str, Any]:
    """Per process role (the main process, or pool children), the busiest functions in py-spy's stacks.

    `self`: where the samples were taken (the leaf); `ours`: inclusive time of sfsync's own
    functions. Shares are of the role's busy samples.
    """
    busy: dict[str, int] = {}
    self_time: dict[str, dict[str, int]] = {}
    ours: dict[str, dict[str, int]] = {}
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        role = "main" if sum(p.startswith("process ") for p in parts) <= 1 else "pool"
        frames = [f for f in parts if f and not f.startswith(("process ", "thread "))]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        n = int(count)
        busy[role] = busy.get(role, 0) + n
        leaf = self_time.setdefault(role, {})
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
        own = ours.setdefault(role, {})
        for frame in set(frames):
            if PROJECT_FRAME.search(frame) and not any(entry in frame for entry in ENTRY_FRAMES):
                own[frame] = own.get(frame, 0) + n

    def rank(table: dict[str, int], total: int) -> list[tuple[str, float]]:
        return [(name, round(100.0 * k / total, 1)) for name, k in sorted(table.items(), key=lambda kv: -kv[1])[:limit]]

    return {role: {"busy_samples": total, "self": rank(self_time[role], total), "ours": rank(ours[role], total)}
            for role, total in sorted(busy.items())}
