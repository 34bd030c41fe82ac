"""Processes for bench/forwarding.py: start and stop them, measure their CPU
from /proc, and summarise a py-spy profile."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Postgres processes shared by every database; counted with the bench's own
# backends, since the bench's writes are what keeps them busy.
POSTGRES_AUXILIARY = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
)


# Runs in the child before the real command: SIGTERM when the benchmark dies,
# even by SIGKILL, so no server outlives it (exec keeps the pid and the setting).
_PDEATHSIG_WRAPPER = """
import ctypes, os, signal, sys
with __import__("contextlib").suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() == 1:
    sys.exit(1)
os.execvp(sys.argv[1], sys.argv[1:])
"""


@dataclass
class Process:
    name: str
    popen: "subprocess.Popen[bytes]"
    log_path: Path | None
    log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path | None,
) -> Process:
    """Start a child in its own session (a terminal's Ctrl-C reaches only the
    benchmark, which then stops its children in order)."""
    log_file = log_path.open("ab") if log_path is not None else None
    popen = subprocess.Popen(
        [sys.executable, "-c", _PDEATHSIG_WRAPPER, *argv],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log_file if log_file is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file is not None else subprocess.DEVNULL,
        start_new_session=True,
    )
    return Process(name=name, popen=popen, log_path=log_path, log_file=log_file)


def stop(process: Process, *, timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; the exit code."""
    if process.alive():
        with contextlib.suppress(ProcessLookupError):
            process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.popen.kill()
            process.popen.wait()
    if process.log_file is not None:
        process.log_file.close()
        process.log_file = None
    return process.popen.returncode


# --------------------------------------------------------------------------
# CPU time from /proc


def _cpu_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def descendants(roots: Iterable[int]) -> set[int]:
    """The processes in `roots` and all their children, recursively."""
    found = set(roots)
    parents = {pid: _parent(pid) for pid in _all_pids()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def postgres_pids(database: str) -> set[int]:
    """Backends connected to `database` and the shared auxiliary processes."""
    found = set()
    for pid in _all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f" {database} " in title or any(aux in title for aux in POSTGRES_AUXILIARY):
            found.add(pid)
    return found


def machine_busy_ticks() -> int:
    """Non-idle CPU time of the whole machine (all cores), in ticks."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0]
    values = [int(v) for v in first.split()[1:]]
    # user, nice, system, irq, softirq (guest time is part of user time;
    # idle, iowait and steal are not this machine's work).
    return values[0] + values[1] + values[2] + values[5] + values[6]


@dataclass
class CpuMark:
    at: float
    seconds: dict[str, float]  # group -> CPU seconds so far


@dataclass
class CpuSampler:
    """Samples the CPU time of named groups of processes in a thread.

    A process is counted with the last value seen, so one that exits between
    samples loses at most one interval. `mark` records the totals at a moment;
    `between` gives the CPU used between two marks, in % of one core.
    """

    groups: dict[str, Callable[[], set[int]]]
    interval: float = 0.5
    marks: dict[str, CpuMark] = field(default_factory=dict)
    _seen: dict[str, dict[int, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _machine_start: int = 0

    def start(self) -> None:
        self._machine_start = machine_busy_ticks()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        readings: dict[str, dict[int, int]] = {}
        for name, pids in self.groups.items():
            try:
                members = pids()
            except OSError:
                members = set()
            readings[name] = {}
            for pid in members:
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    readings[name][pid] = ticks
        with self._lock:
            for name, values in readings.items():
                self._seen.setdefault(name, {}).update(values)

    def totals(self) -> dict[str, float]:
        with self._lock:
            totals = {
                name: sum(values.values()) / CLK_TCK
                for name, values in self._seen.items()
            }
        totals["machine"] = (machine_busy_ticks() - self._machine_start) / CLK_TCK
        return totals

    def mark(self, label: str, at: float | None = None) -> None:
        self.sample()
        self.marks[label] = CpuMark(at=at or time.time(), seconds=self.totals())

    def between(self, first: str, last: str) -> dict[str, float]:
        """% of one core per group (and `machine`, `other`) between marks."""
        a, b = self.marks[first], self.marks[last]
        elapsed = max(b.at - a.at, 1e-9)
        used = {
            name: max(0.0, b.seconds.get(name, 0.0) - a.seconds.get(name, 0.0))
            for name in b.seconds
        }
        percent = {name: 100 * value / elapsed for name, value in used.items()}
        groups = sum(v for k, v in percent.items() if k != "machine")
        percent["other"] = max(0.0, percent.get("machine", 0.0) - groups)
        percent["seconds"] = elapsed
        return percent

    def cpu_seconds(self, first: str, last: str) -> dict[str, float]:
        a, b = self.marks[first], self.marks[last]
        return {
            name: max(0.0, b.seconds.get(name, 0.0) - a.seconds.get(name, 0.0))
            for name in b.seconds
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------
# py-spy


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def _frame_name(frame: str) -> tuple[str, str]:
    """(function label, package) of one collapsed-stack frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    function, file = match["function"], match["file"]
    path = file.replace("\\", "/")
    if "site-packages/" in path:
        relative = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        relative = "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    else:
        relative = path.split("/work/main/", 1)[-1]
    package = relative.split("/", 1)[0].removesuffix(".py")
    if package == "stdlib":
        package = "stdlib:" + relative.split("/")[1].removesuffix(".py")
    return f"{function} ({relative})", package


@dataclass
class Profile:
    samples: int
    self_time: list[tuple[str, float]]  # function, share of samples
    packages: list[tuple[str, float]]  # package of the innermost frame
    inclusive: list[tuple[str, float]]  # app functions, share including callees


def summarise_py_spy(path: Path, *, top: int = 15) -> Profile:
    """Summarise `py-spy record --format raw` output (collapsed stacks)."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread (")]
        if not frames:
            continue
        total += count
        name, package = _frame_name(frames[-1])
        own[name] += count
        packages[package] += count
        seen = set()
        for frame in frames:
            label, frame_package = _frame_name(frame)
            if frame_package == "app" and label not in seen:
                seen.add(label)
                inclusive[label] += count
    total = max(total, 1)

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(key, value / total) for key, value in counter.most_common(n)]

    return Profile(
        samples=total,
        self_time=shares(own, top),
        packages=shares(packages, top),
        inclusive=shares(inclusive, top * 2),
    )
