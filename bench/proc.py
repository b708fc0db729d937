"""Child processes, timed as a whole (wall clock from spawn to exit) with their own peak RSS."""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import ROOT


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """VmHWM (peak resident set) of a live process, in KiB; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Child:
    returncode: int
    seconds: float       # wall clock, spawn to exit
    peak_kb: int         # the child's own VmHWM, sampled every 20 ms (0 if never seen)
    stdout: str
    stderr: str

    def tail(self, chars: int = 300) -> str:
        """The end of what the child said, for a note (stderr first)."""
        text = (self.stderr.strip() or self.stdout.strip() or f"exit status {self.returncode}")
        return " ".join(text[-chars:].split())


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Child:
    """Run ``argv`` to completion: its wall clock (start-up included) and its own peak RSS.

    The wall clock runs from just before the spawn to the moment the process is
    reaped (a blocking wait, so no polling delay is added). A sampler thread reads
    the child's VmHWM every 20 ms. ``ru_maxrss`` from wait4 is not used: on Linux
    an exec'd child inherits the parent's high-water mark, so it would report at
    least the harness's own RSS.
    """
    peak = 0
    done = threading.Event()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, peak_rss_kb(proc.pid) or 0)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            status = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
            seconds = time.perf_counter() - t0
            done.set()
            sampler.join()
            returncode = proc.wait()
        except BaseException:  # interrupted: do not leave the measured process running
            done.set()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        del status
        out.seek(0)
        err.seek(0)
        return Child(returncode, seconds, peak, out.read(), err.read())
