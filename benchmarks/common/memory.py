"""Peak memory of one run (benchmarks/perf.py, perf_h2h.py; tests/nodes/test_perf_counters.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class PeakMemory:
    """Peak memory of one run: CPU = process peak RSS (VmHWM, reset via /proc/self/clear_refs; else a
    5 ms polling thread); CUDA = torch.cuda.max_memory_allocated."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._poll: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled = 0
        self.method = "torch.cuda.max_memory_allocated" if device == "cuda" else "VmHWM (clear_refs)"
        if device != "cuda" and not self._can_clear():
            self.method = "RSS polled every 5 ms"

    @staticmethod
    def _can_clear() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def rss() -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import psutil  # fallback for systems without /proc

            return int(psutil.Process().memory_info().rss)

    def current(self) -> int:
        if self.device == "cuda":
            import torch

            return int(torch.cuda.memory_allocated())
        return self.rss()

    def start(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self.method.startswith("VmHWM"):
            Path("/proc/self/clear_refs").write_text("5")
        else:
            self._stop.clear()
            self._polled = self.rss()

            def poll() -> None:
                while not self._stop.wait(0.005):
                    self._polled = max(self._polled, self.rss())

            self._poll = threading.Thread(target=poll, daemon=True)
            self._poll.start()

    def stop(self) -> int:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        if self.method.startswith("VmHWM"):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            raise RuntimeError("no VmHWM in /proc/self/status")
        self._stop.set()
        if self._poll is not None:
            self._poll.join()
        return max(self._polled, self.rss())
