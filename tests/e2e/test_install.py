"""The pack as a user installs it: a `git clone` of this repository (its committed HEAD) into the
custom_nodes of a clean ComfyUI. ComfyUI must import it, list every node, serve its frontend script and
its example workflows; an import failure must fail the check, with the traceback shown (a deliberately
broken copy beside it proves that). Also what the Comfy Registry takes from the clone: `comfy node
validate` passes and the `comfy node pack` zip holds the code, workflows, thumbnails, js/ and the icon,
and none of the development files (.comfyignore). And the way newer cores install packs: the
`comfyui-manager` package's own command line (`cm-cli install <git URL>`, offline: the URL is a local
bare clone) into a fresh copy of ComfyUI, whose server must then load every node and serve the workflows."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
from comfy_server import ComfyServer, comfyui_dir
from graphs import W2SD_NODE_IDS

REPO = Path(__file__).resolve().parents[2]
NODE_IDS = set(W2SD_NODE_IDS)
CLONE_NAME = "comfyui-w2sd"
BROKEN_NAME = "w2sd-broken"
# comfy-cli without prompts, telemetry or its update check: it never touches the network here.
COMFY_CLI_ENV = {"DO_NOT_TRACK": "1", "COMFY_NO_UPDATE_CHECK": "1"}
MANAGER_FLAG = "--enable-manager"  # cores that bundle the comfyui-manager package start it with this
MANAGER_SOURCE = f"{CLONE_NAME}.git"  # cm-cli names the installed folder after the URL's last part


def import_failure(log: str, pack: Path) -> str | None:
    """ComfyUI's traceback for a custom node folder that failed to import, or None if it imported."""
    match = re.search(rf"^.*Cannot import {re.escape(str(pack))} module for custom nodes:.*$", log, re.M)
    if match is None and f"(IMPORT FAILED): {pack}" not in log:
        return None
    end = match.end() if match else len(log)
    start = log.rfind("Traceback (most recent call last):", 0, end)
    return log[start if start >= 0 else max(0, end - 4000) : end]


def assert_pack_loaded(server: ComfyServer, pack: Path) -> None:
    """The check a user's install must pass: the folder imported and every W2SD node is listed."""
    failure = import_failure(server.log_text(), pack)
    if failure is not None:
        raise AssertionError(f"ComfyUI could not import {pack.name}:\n{failure}")
    missing = NODE_IDS - set(server.object_info())
    assert not missing, f"{pack.name} imported but {sorted(missing)} are not in /object_info"


def git(*args: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ComfyServer, Path, Path]]:
    """(server, cloned pack, broken copy): a clean ComfyUI with only these two in custom_nodes."""
    base = tmp_path_factory.mktemp("clean_comfyui")
    custom_nodes = base / "custom_nodes"
    custom_nodes.mkdir()
    clone = custom_nodes / CLONE_NAME
    head = git("rev-parse", "HEAD")  # pinned: others may commit while this runs
    git("clone", "--quiet", "--no-checkout", REPO, clone, cwd=base)
    git("checkout", "--quiet", head, cwd=clone)
    broken = custom_nodes / BROKEN_NAME
    shutil.copytree(clone, broken, ignore=shutil.ignore_patterns(".git"))
    (broken / "__init__.py").write_text(
        'raise RuntimeError("deliberately broken pack for the install test")\n'
    )
    server = ComfyServer(base, comfyui_dir(), pack_dir=None).start()
    yield server, clone, broken
    server.stop()


def test_the_clone_holds_no_local_build_output(install) -> None:
    _, clone, _ = install
    assert not any((clone / name).exists() for name in (".venv", ".comfyui", ".cache", "out"))


def test_a_clone_in_custom_nodes_loads_every_node(install) -> None:
    server, clone, _ = install
    assert_pack_loaded(server, clone)
    assert "Unable to parse pyproject.toml" not in server.log_text()  # ComfyUI reads [tool.comfy] too


def test_an_import_failure_fails_the_check_with_its_traceback(install) -> None:
    server, _, broken = install
    with pytest.raises(AssertionError) as failure:
        assert_pack_loaded(server, broken)
    message = str(failure.value)
    assert f"could not import {BROKEN_NAME}" in message
    assert "Traceback (most recent call last):" in message
    assert "RuntimeError: deliberately broken pack for the install test" in message


def test_the_clone_serves_its_frontend_script_and_example_workflows(install) -> None:
    server, clone, _ = install
    assert f"/extensions/{CLONE_NAME}/w2sd.js" in server.request("/extensions")
    workflows = sorted(p.stem for p in (clone / "workflows").glob("*.json"))
    assert len(workflows) >= 10
    assert sorted(server.request("/api/workflow_templates")[CLONE_NAME]) == workflows


def test_the_pack_needs_no_packages_beyond_comfyui() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project.get("dependencies", []) == []
    requirements = REPO / "requirements.txt"
    if requirements.exists():
        lines = [ln for ln in requirements.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines == []


def comfy_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfy_cli", "--skip-prompt", *args],
        cwd=cwd, env={**os.environ, **COMFY_CLI_ENV}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_registry_validation_and_zip(install) -> None:
    _, clone, _ = install
    validated = comfy_cli("node", "validate", cwd=clone)
    out = validated.stdout + validated.stderr
    assert validated.returncode == 0 and "All validation checks passed" in out, out
    assert "Warning" not in out, out

    packed = comfy_cli("node", "pack", cwd=clone)
    assert packed.returncode == 0, packed.stdout + packed.stderr
    names = set(zipfile.ZipFile(clone / "node.zip").namelist())
    comfy = tomllib.loads((clone / "pyproject.toml").read_text())["tool"]["comfy"]
    icon = comfy["Icon"].rsplit("/main/", 1)[-1]  # the Icon URL points at this file on the main branch
    expected = {"__init__.py", "pyproject.toml", "LICENSE", icon, "js/w2sd.js"}
    expected |= {
        f"workflows/{p.name}" for p in (clone / "workflows").iterdir() if p.suffix in (".json", ".jpg")
    }
    expected |= {
        f
        for f in git("ls-files", cwd=clone).split()
        if f.startswith(("w2sd_core/", "nodes/")) and f.endswith(".py")
    }
    assert expected <= names, sorted(expected - names)
    development = {n for n in names if n.startswith((".ci/", "tests/", "tools/", "benchmarks/"))}
    assert not development, (
        f"development files in the Registry archive (see .comfyignore): {sorted(development)}"
    )


@pytest.fixture(scope="module")
def manager_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ComfyServer, Path, str, str]]:
    """(server, installed pack, cm-cli output, commit served by the URL): a fresh copy of ComfyUI, the pack
    installed by comfyui-manager's `cm-cli install` from a `file://` git URL, then that ComfyUI started."""
    root = tmp_path_factory.mktemp("manager")
    comfyui = root / "ComfyUI"
    shutil.copytree(comfyui_dir(), comfyui, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    for path in [comfyui, *comfyui.rglob("*")]:  # the origin may be read-only (COMFYUI_PATH, 0.29.0)
        path.chmod(path.stat().st_mode | 0o200)
    source = root / "src" / MANAGER_SOURCE
    git("clone", "--quiet", "--bare", REPO, source, cwd=root)
    served = git("rev-parse", "HEAD", cwd=source)
    before = {p.name for p in (comfyui / "custom_nodes").iterdir()}
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_FOLDERS_BASE_PATH"}
    # `--mode local`: the node list shipped in the package, no fetch. cm-cli 4.3 exits 0 even when an
    # install fails (its --exit-on-fail reaches install_node under another name), so the folder counts.
    done = subprocess.run(
        [sys.executable, "-m", "cm_cli", "install", "--mode", "local", f"file://localhost{source}"],
        cwd=comfyui, env={**env, "COMFYUI_PATH": str(comfyui)}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    added = {p.name for p in (comfyui / "custom_nodes").iterdir()} - before
    assert added == {CLONE_NAME}, f"cm-cli added {sorted(added)} to custom_nodes:\n{output}"
    extra_args: tuple[str, ...] = ()
    if MANAGER_FLAG in (comfyui / "comfy" / "cli_args.py").read_text():  # newer cores run the Manager
        config_path = comfyui / "user" / "__manager" / "config.ini"  # written by cm-cli above
        config = configparser.ConfigParser(strict=False)
        config.read(config_path)
        if not config.has_section("default"):
            config.add_section("default")
        config.set("default", "network_mode", "offline")  # no list fetching at start-up
        config_path.parent.mkdir(parents=True, exist_ok=True)
        with config_path.open("w") as file:
            config.write(file)
        extra_args = (MANAGER_FLAG,)
    server = ComfyServer(comfyui, comfyui, pack_dir=None, extra_args=extra_args).start()  # its own base
    yield server, comfyui / "custom_nodes" / CLONE_NAME, output, served
    server.stop()


def test_comfyui_manager_cli_installs_the_pack_from_a_local_git_url(manager_install) -> None:
    _, pack, output, served = manager_install
    assert "[INSTALLED]" in output and "Installation was successful." in output, output
    assert git("rev-parse", "HEAD", cwd=pack) == served
    assert git("status", "--porcelain", cwd=pack) == ""  # a clean checkout, nothing written into it


def test_after_a_manager_install_the_server_loads_every_node_and_serves_the_workflows(
    manager_install,
) -> None:
    server, pack, _, _ = manager_install
    assert_pack_loaded(server, pack)
    assert f"/extensions/{CLONE_NAME}/w2sd.js" in server.request("/extensions")
    workflows = sorted(p.stem for p in (pack / "workflows").glob("*.json"))
    assert len(workflows) >= 10
    assert sorted(server.request("/api/workflow_templates")[CLONE_NAME]) == workflows


def test_a_core_that_runs_the_manager_lists_the_pack_as_installed_and_enabled(manager_install) -> None:
    server, _, _, served = manager_install
    if MANAGER_FLAG not in server.command():
        # 0.3.x: no built-in Manager (users add the ComfyUI-Manager custom node); nothing more to ask.
        assert "comfyui_manager" not in (server.comfyui / "main.py").read_text()
        return
    log = server.log_text()
    assert "[START] ComfyUI-Manager" in log, server.log_tail()
    assert "Failed to perform initial fetching" not in log  # offline mode: it asked the network nothing
    installed = server.request("/v2/customnode/installed")
    assert installed.get(CLONE_NAME, {}).get("ver") == served, installed
    assert installed[CLONE_NAME]["enabled"] is True, installed
