"""What every benchmark report says about its run: the machine, the code measured, the load, and the
results file's sections (replaced on a re-run)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from pathlib import Path

from common import ROOT


def machine(device: str = "cpu", threads: int | None = None) -> str:
    """CPU model, cores, torch and its thread count (default: torch's own), and the GPU on CUDA."""
    import torch

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if cpu == "unknown CPU":
        cpu = platform.processor() or cpu
    threads = torch.get_num_threads() if threads is None else threads
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, torch threads {threads}"
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return text


def code_version() -> str:
    """The commit measured, and whether the pack's code differs from it in the working tree."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "nodes", "w2sd_core", "__init__.py"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        # An exported tree (git archive) has no .git: say which commit it is through the environment.
        return os.environ.get("W2SD_PERF_CODE_VERSION", "code version unknown")
    return f"commit {commit}" + (" + uncommitted changes in the pack's code" if dirty else "")


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def write_section(path: Path, key: str, text: str, header: str) -> None:
    """Put `text` between the markers `<!-- perf:key -->` and `<!-- /perf:key -->` of the results file,
    replacing what they held; a new key is appended, a new file starts with `header`."""
    start, end = f"<!-- perf:{key} -->", f"<!-- /perf:{key} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else header
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
