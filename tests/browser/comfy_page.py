"""Driving ComfyUI's frontend in a playwright page: open the app, add nodes, set widgets, click on the canvas.

Every helper takes the page with the app loaded by `open_app` (the browser: tests/conftest.py).
"""

from __future__ import annotations

from typing import Any


def open_app(page: Any, url: str, node_types: tuple[str, ...] = (), timeout_s: float = 90) -> None:
    """Load the UI and wait until the canvas, `window.app` and the given node types are there."""
    page.goto(url)
    page.wait_for_selector("canvas#graph-canvas", timeout=timeout_s * 1000)
    page.wait_for_function(STARTED, arg=list(node_types), timeout=timeout_s * 1000)


# `window.app` appears before the frontend has opened its start-up workflow (the default graph, in a
# workflow tab); frontend 1.47 opens it a few hundred ms later and replaces whatever a test built in
# between. The start-up is over once a workflow is active and the loading spinner is gone.
STARTED = """(types) => window.app?.graph && window.LiteGraph
  && types.every((t) => LiteGraph.registered_node_types[t])
  && app.extensionManager?.workflow?.activeWorkflow && !app.extensionManager.spinner"""


def clear(page: Any) -> None:
    """An empty graph with a new id, loaded as a workflow is. (`app.graph.clear()` alone resets the graph
    id to zero; frontend 1.47 keeps widget values per graph id and node id, so the next graph's node 1
    would come back with the old node 1's values.)"""
    page.evaluate(
        """async () => {
          await app.loadGraphData({ last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [],
            config: {}, extra: {}, version: 0.4 });
          app.canvas.ds.offset = [0, 0];
          app.canvas.ds.scale = 1;
        }"""
    )


def add_node(page: Any, node_type: str, pos: tuple[float, float] = (100, 100)) -> int:
    return page.evaluate(
        """([type, pos]) => {
          const node = LiteGraph.createNode(type);
          node.pos = pos;
          app.graph.add(node);
          return node.id;
        }""",
        [node_type, list(pos)],
    )


def connect(page: Any, src: int, src_slot: int, dst: int, input_name: str) -> None:
    page.evaluate(
        """([src, slot, dst, name]) => {
          const a = app.graph.getNodeById(src), b = app.graph.getNodeById(dst);
          a.connect(slot, b, b.findInputSlot(name));
        }""",
        [src, src_slot, dst, input_name],
    )


def widgets(page: Any, node_id: int) -> dict[str, Any]:
    """Widget values by name (the frontend's own widgets included)."""
    return page.evaluate(
        "(id) => Object.fromEntries(app.graph.getNodeById(id).widgets.map((w) => [w.name, w.value]))", node_id
    )


def set_widget(page: Any, node_id: int, name: str, value: Any) -> None:
    """Change a widget the way the canvas does on user input: setValue runs its callback and the
    node's onWidgetChanged (frontends before setValue: value + callback + onWidgetChanged)."""
    page.evaluate(
        """([id, name, value]) => {
          const node = app.graph.getNodeById(id);
          const w = node.widgets.find((x) => x.name === name);
          if (!w) throw new Error(`no widget ${name} on ${node.type}`);
          if (w.setValue) {
            w.setValue(value, { e: undefined, node, canvas: app.canvas });
          } else {
            const old = w.value;
            w.value = value;
            w.callback?.(value, app.canvas, node);
            node.onWidgetChanged?.(name, value, old, w);
          }
          app.graph.setDirtyCanvas(true, true);
        }""",
        [node_id, name, value],
    )


def widget_box(page: Any, node_id: int, name: str) -> dict[str, float]:
    """The widget's rectangle in page pixels: {x, y, w, h}."""
    return page.evaluate(
        """([id, name]) => {
          const node = app.graph.getNodeById(id);
          const w = node.widgets.find((x) => x.name === name);
          const y = w.y ?? w.last_y;
          const h = w.computeSize ? w.computeSize(node.size[0])[1] : LiteGraph.NODE_WIDGET_HEIGHT;
          const ds = app.canvas.ds;
          const rect = app.canvas.canvas.getBoundingClientRect();
          const [x0, y0] = ds.convertOffsetToCanvas([node.pos[0], node.pos[1] + y]);
          return { x: rect.left + x0, y: rect.top + y0, w: node.size[0] * ds.scale, h: h * ds.scale };
        }""",
        [node_id, name],
    )


def click_widget(page: Any, node_id: int, name: str, where: str = "center") -> None:
    """A real mouse click on a widget: `center`, or the `left` / `right` arrow of a number or combo."""
    page.evaluate("() => app.canvas.draw(true, true)")
    box = widget_box(page, node_id, name)
    x = {"left": box["x"] + 22, "right": box["x"] + box["w"] - 22, "center": box["x"] + box["w"] / 2}[where]
    page.mouse.click(x, box["y"] + box["h"] / 2)


def choose_menu_entry(page: Any, text: str) -> None:
    """Click an entry of the litegraph context menu that a combo widget opened."""
    entry = page.locator(".litecontextmenu .litemenu-entry", has_text=text).first
    entry.wait_for(timeout=5000)
    entry.click()


def graph_to_prompt(page: Any) -> dict[str, Any]:
    """The API-format prompt the Run button would POST (`app.graphToPrompt().output`)."""
    return page.evaluate("async () => (await app.graphToPrompt()).output")


def serialize(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(app.graph.serialize()))")


def load_workflow(page: Any, workflow: dict[str, Any]) -> None:
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)


def drawn_texts(page: Any) -> list[str]:
    """Every string the canvas draws in one full frame (fillText calls)."""
    return page.evaluate(
        """() => {
          const proto = CanvasRenderingContext2D.prototype;
          const original = proto.fillText;
          const seen = [];
          proto.fillText = function (text, ...rest) { seen.push(String(text)); return original.call(this, text, ...rest); };
          try { app.canvas.draw(true, true); } finally { proto.fillText = original; }
          return seen;
        }"""
    )
