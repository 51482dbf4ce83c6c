"""A real headless ComfyUI server for tests and the demo (one implementation for both).

    server = ComfyServer(base_dir).start()       # pack linked into custom_nodes, settings pre-seeded
    result = server.run(api_graph)                # POST /prompt, poll /history, images via /view
    result.images["9"][0]                         # HxWx3 uint8 numpy array
    server.stop()

Which ComfyUI: `COMFYUI_PATH` (a user's checkout) or the pinned copy `.comfyui/<W2SD_COMFYUI_VERSION>`
made by `tools/dev.py setup`. The server runs with the current interpreter (`sys.executable`).
Standard library only at import time; numpy and Pillow are imported when images are fetched.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMFYUI_VERSION = "0.3.75"
COMFYUI_VERSIONS = ("0.3.75", "0.3.52")
PACK_LINK_NAME = "comfyui-w2sd"
NODE_PREFIX = "W2SD"
SETTINGS = {"Comfy.TutorialCompleted": True}
# ComfyUI runs text encoders in fp16 even on the CPU, where fp16 matmuls are ~90x slower than fp32 here
# (a CLIP-L encode: 3-7 s instead of ~1 s). The tests compare runs of one configuration, so fp32 is fine.
CPU_ARGS = ("--cpu", "--fp32-text-enc")
# ComfyUI allows one of these; an extra_args that names another mode replaces --cpu (needs a GPU).
VRAM_MODES = {"--cpu", "--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram"}
# The server also gets OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads make torch 7-10x slower when
# other processes share the CPU (tests next to a server, several test runs on one machine).


def comfyui_dir(version: str | None = None) -> Path:
    """The ComfyUI source folder: $COMFYUI_PATH, else .comfyui/<version or $W2SD_COMFYUI_VERSION>."""
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"]).expanduser().resolve()
    version = version or os.environ.get("W2SD_COMFYUI_VERSION") or DEFAULT_COMFYUI_VERSION
    return REPO_ROOT / ".comfyui" / version


def pack_defines_nodes(pack_dir: Path = REPO_ROOT) -> bool:
    """Whether the pack's __init__ exports nodes (then the server must list W2SD* node ids)."""
    if os.environ.get("W2SD_EXPECT_NODES") in ("0", "1"):
        return os.environ["W2SD_EXPECT_NODES"] == "1"
    init = pack_dir / "__init__.py"
    return init.is_file() and "NODE_CLASS_MAPPINGS" in init.read_text()


def prepare_base(base_dir: Path, pack_dir: Path | None = REPO_ROOT) -> Path:
    """Create a ComfyUI base directory: custom_nodes (with the pack linked), user settings, models."""
    base_dir = Path(base_dir)
    for sub in ("custom_nodes", "models", "input", "output", "temp", "user/default"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    if pack_dir is not None:
        link = base_dir / "custom_nodes" / PACK_LINK_NAME
        if not link.is_symlink():
            link.symlink_to(Path(pack_dir).resolve(), target_is_directory=True)
    settings = base_dir / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        settings.write_text(json.dumps(SETTINGS))
    return base_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyError(AssertionError):
    """A prompt the server rejected or failed to execute; `message` is ComfyUI's own text."""

    def __init__(self, message: str, details: Any, log_tail: str) -> None:
        super().__init__(
            f"{message}\n{json.dumps(details, indent=1, default=str)[:4000]}\n--- server log ---\n{log_tail}"
        )
        self.message = message
        self.details = details


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict[str, Any]
    """Raw /history outputs per output node id."""
    images: dict[str, list[Any]] = field(default_factory=dict)
    """Images per output node id, as HxWxC uint8 numpy arrays."""

    @property
    def image(self) -> Any:
        """The one image of a graph with a single image output."""
        all_images = [img for imgs in self.images.values() for img in imgs]
        if len(all_images) != 1:
            raise AssertionError(f"expected one image, got {len(all_images)} from nodes {list(self.images)}")
        return all_images[0]


class ComfyServer:
    """One ComfyUI process on a free localhost port, with its own base directory and log file."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        comfyui: str | os.PathLike[str] | None = None,
        *,
        pack_dir: Path | None = REPO_ROOT,
        expect_pack_nodes: bool | None = None,
        python: str | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.base_dir = prepare_base(Path(base_dir), pack_dir)
        self.comfyui = Path(comfyui) if comfyui else comfyui_dir()
        self.pack_dir = pack_dir
        self.expect_pack_nodes = (
            pack_defines_nodes(pack_dir)
            if expect_pack_nodes is None and pack_dir
            else bool(expect_pack_nodes)
        )
        self.python = python or sys.executable
        self.port = port or free_port()
        self.extra_args = extra_args
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.log_path = self.base_dir / f"comfyui-{self.client_id[:8]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def command(self) -> list[str]:
        device = [a for a in CPU_ARGS if a != "--cpu" or not VRAM_MODES & set(self.extra_args)]
        return [
            self.python, "main.py", *device, "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--base-directory", str(self.base_dir),
            "--database-url", "sqlite:///:memory:", *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 180, port_retries: int = 3) -> ComfyServer:
        if not (self.comfyui / "main.py").is_file():
            raise FileNotFoundError(f"no ComfyUI at {self.comfyui}: run `python3 tools/dev.py setup`")
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"}  # see CPU_ARGS
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                if "address already in use" in self.log_text() and port_retries > 0:
                    # Another process took the free port before ComfyUI bound it: take another one.
                    self.port = free_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                    return self.start(timeout, port_retries - 1)
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                info = self.object_info()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"ComfyUI did not answer in {timeout} s\n{self.log_tail()}") from None
                time.sleep(0.25)
        if self.expect_pack_nodes and not any(name.startswith(NODE_PREFIX) for name in info):
            log = self.log_text()
            self.stop()
            raise RuntimeError(f"the pack loaded no {NODE_PREFIX}* nodes; server log:\n{_import_errors(log)}")
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ComfyServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP ------------------------------------------------------------------------------------

    def request(self, path: str, payload: Any = None, timeout: float = 30) -> Any:
        """GET (payload None) or POST JSON; returns the decoded JSON body (or None when empty)."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body.strip() else None

    def object_info(self, node: str | None = None) -> dict[str, Any]:
        info = self.request("/object_info" + (f"/{node}" if node else ""))
        return info[node] if node else info

    def interrupt(self) -> None:
        self.request("/interrupt", {})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self.request("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def running(self) -> list[str]:
        """Prompt ids executing now (GET /queue)."""
        return [item[1] for item in self.request("/queue").get("queue_running", [])]

    def queue(self, api_graph: dict[str, Any]) -> str:
        """POST /prompt; returns the prompt id. Raises ComfyError with ComfyUI's message if rejected."""
        try:
            answer = self.request("/prompt", {"prompt": api_graph, "client_id": self.client_id})
        except urllib.error.HTTPError as e:
            details = json.loads(e.read() or b"{}")
            error = details.get("error", {})
            message = error.get("message", str(e)) if isinstance(error, dict) else str(error)
            node_msgs = [
                f"{node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}"
                for node_id, info in details.get("node_errors", {}).items()
                for err in info.get("errors", [])
            ]
            raise ComfyError("\n".join([message, *node_msgs]), details, self.log_tail()) from None
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll /history until the prompt finished; returns its history entry, raises on execution_error."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.request(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error" or not status.get("completed"):
                    messages = dict(status.get("messages", []))
                    if "execution_error" in messages:
                        error = messages["execution_error"]
                        raise ComfyError(error.get("exception_message", "").strip(), error, self.log_tail())
                    if "execution_interrupted" in messages:
                        raise ComfyError("interrupted", messages["execution_interrupted"], self.log_tail())
                    raise ComfyError(f"prompt {prompt_id} failed", status, self.log_tail())
                return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not done after {timeout} s\n{self.log_tail()}")
            time.sleep(0.1)

    def run(self, api_graph: dict[str, Any], timeout: float = 300) -> RunResult:
        """Queue an API-format graph, wait for it, and fetch every output image."""
        prompt_id = self.queue(api_graph)
        outputs = self.wait(prompt_id, timeout)["outputs"]
        images = {
            node_id: [self.view(img) for img in out["images"]]
            for node_id, out in outputs.items()
            if out.get("images")
        }
        return RunResult(prompt_id, outputs, images)

    def run_error(self, api_graph: dict[str, Any], timeout: float = 300) -> str:
        """Run a graph that must fail; returns ComfyUI's raw error message (validation or execution)."""
        try:
            self.run(api_graph, timeout)
        except ComfyError as e:
            return e.message
        raise AssertionError(f"the prompt succeeded but was expected to fail\n{self.log_tail()}")

    def view_bytes(self, image: dict[str, str]) -> bytes:
        query = urllib.parse.urlencode(
            {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": image["type"]}
        )
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=30) as response:
            return response.read()

    def view(self, image: dict[str, str]) -> Any:
        """An output image as a HxWxC uint8 numpy array."""
        import io

        import numpy as np
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.view_bytes(image))))


def _import_errors(log: str) -> str:
    """The part of a server log about custom node import failures (or the whole tail)."""
    match = re.search(r"Traceback \(most recent call last\):.*?Cannot import .*?$", log, re.S | re.M)
    return match.group(0) if match else "\n".join(log.splitlines()[-120:])
