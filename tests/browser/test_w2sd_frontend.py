"""The W2SD frontend (js/) in real Chromium against a real ComfyUI server with the pack loaded.

Covers the cost label (numbers checked against the formula below, written from docs/ALGORITHM.md
independently of js/cost.js), the preset combos, real clicks and hovers on the canvas, that no
frontend-only widget reaches the API prompt or the saved workflow, and a screenshot to look at.

The frontend is the one the ComfyUI under test pins: `python3 tools/dev.py test --comfyui-version 0.3.52`
runs these tests with ComfyUI 0.3.52's frontend (1.25.10) instead of 0.3.75's (1.32.9).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from browser.comfy_page import (
    add_node,
    choose_menu_entry,
    clear,
    click_widget,
    connect,
    drawn_texts,
    graph_to_prompt,
    load_workflow,
    open_app,
    serialize,
    set_widget,
    widget_box,
    widgets,
)
from comfy_server import comfyui_dir
from example_workflows import core_version, for_core
from graphs import W2SD_NODE_IDS

REPO = Path(__file__).resolve().parents[2]
W2SD_NODES = W2SD_NODE_IDS
FRONTEND_ONLY = ("preset", "w2sd_cost")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


# --- the cost formula (docs/ALGORITHM.md "Cost and the equal-budget setting"; nodes/reflection_inputs.py) -----


def expected_cost(
    steps: int, cfg: float = 5.5, mode: str = "W2SD", window: str = "percent", start_percent: float = 0.0,
    end_percent: float = 1.0, reflect_steps: int = -1, inversion: str = "warm_start", inversion_iters: int = 0,
    equal_budget: bool = False, strong_cfg: float | None = None, weak_cfg: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    k = {"fixed_point": max(inversion_iters, 1), "warm_start": inversion_iters}.get(inversion, 0)
    if equal_budget:  # paper Fig. 13; fixed-point iterations shrink lambda to stay within the budget
        t = steps // 2
        r = min(t // 2, (steps - t) // (2 + k))
    else:
        t = steps
        if window == "steps":
            r = steps - 1 if reflect_steps == -1 else min(reflect_steps, steps - 1)
        else:
            r = sum(1 for i in range(steps - 1) if start_percent <= i / steps < end_percent)
    strong, weak = {
        "W2SD": (1, 1 + k), "S2WD (diagnosis)": (1 + k, 1),
        "Re-Sampling (aligned)": (1, 1 + k), "Re-Sampling (vanilla)": (1, 0),
    }[mode]  # fmt: skip
    main_passes = 1 if cfg == 1 else 2
    strong_passes = 1 if (cfg if strong_cfg is None else strong_cfg) in (0, 1) else 2
    weak_passes = 1 if (cfg if weak_cfg is None else weak_cfg) in (0, 1) else 2
    nfe = t + r * (strong + weak)
    passes = t * main_passes + r * (strong * strong_passes + weak * weak_passes)
    steps_note = f"{t} of {steps} steps" if equal_budget else f"{steps} steps"
    return {
        "nfe": nfe, "stockNfe": steps, "passes": passes, "stockPasses": steps * main_passes, "reflected": r,
        "ratio": nfe / steps, "line": f"NFE {nfe} = {nfe / steps:.2f}x stock ({steps_note})",
    }  # fmt: skip


# --- fixtures (the shared `server` and `chromium_browser` come from tests/conftest.py) -------------------


@pytest.fixture(scope="module")
def page(server, chromium_browser):  # type: ignore[no-untyped-def]
    """One tab on the session's ComfyUI, with the app and the W2SD node types loaded."""
    pg = chromium_browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    open_app(pg, server.url + "/", W2SD_NODES)
    pg.w2sd_errors = errors
    yield pg
    pg.close()


@pytest.fixture
def app(page):  # type: ignore[no-untyped-def]
    """The page with an empty graph; fails the test on an uncaught error thrown from this pack's scripts."""
    clear(page)
    del page.w2sd_errors[:]
    yield page
    ours = [e for e in page.w2sd_errors if "w2sd" in e.lower()]
    assert not ours, ours


@pytest.fixture(scope="module")
def object_info(server) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return server.object_info()


def cost(page: Any, node_id: int) -> dict[str, Any]:
    return page.evaluate("(id) => { const c = app.graph.getNodeById(id).w2sdCost; return {...c}; }", node_id)


# --- the pure formula module ---------------------------------------------------------------------------


def test_cost_js_unit_tests_pass_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run(
        [node, "--test", str(REPO / "tests" / "browser" / "cost.test.mjs")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# --- the label ----------------------------------------------------------------------------------------


def test_label_follows_steps_window_inversion_cfg_and_mode(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler")
    settings: dict[str, Any] = {"steps": 20}
    edits: list[dict[str, Any]] = [
        {},
        {"steps": 30},
        {"window": "steps"},
        {"reflect_steps": 10},
        {"reflect_steps": 40},
        {"reflect_steps": -1, "inversion": "fixed_point"},
        {"inversion_iters": 1},
        {"inversion_iters": 0},
        {"inversion": "reference"},
        {"cfg": 1.0},
        {"cfg": 7.0, "mode": "Re-Sampling (vanilla)"},
        {"mode": "Re-Sampling (aligned)", "inversion": "fixed_point", "inversion_iters": 2},
        {"mode": "S2WD (diagnosis)"},
        {
            "mode": "W2SD",
            "inversion": "explicit",
            "window": "percent",
            "start_percent": 0.2,
            "end_percent": 0.6,
        },
        {"end_percent": 1.0},
        {"equal_budget": True},
        {"steps": 51},
        {"inversion": "fixed_point", "inversion_iters": 3},
        {"inversion_iters": 0},  # fixed_point runs (and equal_budget plans) at least 1 iteration
    ]
    for edit in edits:
        for name, value in edit.items():
            set_widget(app, k, name, value)
        settings.update(edit)
        want = expected_cost(**settings)
        got = cost(app, k)
        for key in ("nfe", "stockNfe", "passes", "stockPasses", "reflected"):
            assert got[key] == want[key], (settings, key, got, want)
        assert got["ratio"] == pytest.approx(want["ratio"]), settings
        assert got["lines"][0] == want["line"], settings
    # The last frame drew exactly these lines on the node.
    texts = drawn_texts(app)
    for line in cost(app, k)["lines"]:
        assert line in texts


def test_paper_lambda_reads_2_90x_stock(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler")
    set_widget(app, k, "window", "steps")
    set_widget(app, k, "inversion", "explicit")
    c = cost(app, k)
    assert c["lines"] == [
        "NFE 58 = 2.90x stock (20 steps)",
        "passes 116 = 2.90x stock",
        "19 reflected; cfg 5.5",
    ]


def test_default_settings_read_2_90x_stock(app) -> None:  # type: ignore[no-untyped-def]
    """The node's defaults: every step of 20 but the last reflected (19), warm_start with no refinement."""
    k = add_node(app, "W2SDKSampler")
    assert cost(app, k)["lines"] == [
        "NFE 58 = 2.90x stock (20 steps)",
        "passes 116 = 2.90x stock",
        "19 reflected; cfg 5.5",
    ]


def test_real_clicks_on_the_steps_arrows_update_the_label(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler", (100, 150))
    click_widget(app, k, "steps", "right")
    assert widgets(app, k)["steps"] == 21
    assert expected_cost(21)["line"] in drawn_texts(app)
    click_widget(app, k, "steps", "left")
    click_widget(app, k, "steps", "left")
    assert widgets(app, k)["steps"] == 19
    assert expected_cost(19)["line"] in drawn_texts(app)


def test_label_counts_the_pair_side_cfgs_upstream(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler", (500, 100))
    gap = add_node(app, "W2SDCFGGap", (100, 100))
    pair = add_node(app, "W2SDModelPair", (100, 300))
    set_widget(app, k, "window", "steps")
    connect(app, gap, 0, k, "pair")
    assert cost(app, k)["passes"] == expected_cost(20, window="steps", strong_cfg=5.5, weak_cfg=0.0)["passes"]
    assert cost(app, k)["lines"][2] == "19 reflected; cfg 5.5, sides 5.5 / 0"
    set_widget(app, gap, "weak_cfg", 3.0)
    assert cost(app, k)["passes"] == expected_cost(20, window="steps", strong_cfg=5.5, weak_cfg=3.0)["passes"]
    # Stacked: the pair node closest to the sampler wins; an unset (-1) side falls through to the next.
    connect(app, pair, 0, gap, "pair")
    set_widget(app, pair, "strong_cfg", 1.0)
    set_widget(app, pair, "weak_cfg", 1.0)
    assert cost(app, k)["passes"] == expected_cost(20, window="steps", strong_cfg=5.5, weak_cfg=3.0)["passes"]
    # A bypassed node passes the pair through untouched.
    app.evaluate("(id) => { app.graph.getNodeById(id).mode = 4; }", gap)
    assert cost(app, k)["passes"] == expected_cost(20, window="steps", strong_cfg=1.0, weak_cfg=1.0)["passes"]


def test_guider_shows_the_cost_per_reflected_step(app) -> None:  # type: ignore[no-untyped-def]
    g = add_node(app, "W2SDGuider")
    c = cost(app, g)
    assert c["nfe"] is None
    assert c["lines"][:2] == ["+2.0 NFE per reflected step", "+4 passes per reflected step"]  # warm_start 0
    set_widget(app, g, "inversion", "explicit")
    assert cost(app, g)["lines"][:2] == ["+2.0 NFE per reflected step", "+4 passes per reflected step"]
    set_widget(app, g, "inversion", "fixed_point")
    set_widget(app, g, "inversion_iters", 3)
    assert cost(app, g)["lines"][0] == "+5.0 NFE per reflected step"
    set_widget(app, g, "mode", "Re-Sampling (vanilla)")
    assert cost(app, g)["lines"][0] == "+1.0 NFE per reflected step"
    set_widget(app, g, "cfg", 1.0)
    assert cost(app, g)["lines"][1] == "+1 passes per reflected step"
    set_widget(app, g, "equal_budget", True)
    assert "KSampler only" in cost(app, g)["lines"][2]
    assert "+1.0 NFE per reflected step" in drawn_texts(app)


def test_settings_the_server_refuses_are_flagged_on_the_label(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler")
    set_widget(app, k, "window", "steps")
    set_widget(app, k, "reflect_steps", 25)
    assert cost(app, k)["lines"][2] == "reflect_steps 25 > 19: refused"


def iters_state(page: Any, node_id: int) -> dict[str, Any]:
    """inversion_iters as the canvas last drew it: disabled (greyed, no number, ignores clicks) or not."""
    page.evaluate("() => app.canvas.draw(true, true)")
    return page.evaluate(
        """(id) => {
          const w = app.graph.getNodeById(id).widgets.find((x) => x.name === 'inversion_iters');
          return { value: w.value, disabled: !!w.disabled, drawnDisabled: !!w.computedDisabled };
        }""",
        node_id,
    )


def test_inversion_iters_is_greyed_out_unless_the_inversion_is_refined(app) -> None:  # type: ignore[no-untyped-def]
    """explicit and reference inversions ignore inversion_iters (and the label counts none): the widget
    must not look like refinements the user bought. fixed_point and warm_start refine."""
    k = add_node(app, "W2SDKSampler", (100, 150))
    assert widgets(app, k)["inversion"] == "warm_start"  # the default, with no refinement
    assert iters_state(app, k) == {"value": 0, "disabled": False, "drawnDisabled": False}

    click_widget(app, k, "inversion")  # the combo's own menu, as a user picks it
    choose_menu_entry(app, "explicit")
    assert widgets(app, k)["inversion"] == "explicit"
    assert iters_state(app, k) == {"value": 0, "disabled": True, "drawnDisabled": True}
    click_widget(app, k, "inversion_iters", "right")  # a real click on a greyed-out widget does nothing
    assert iters_state(app, k)["value"] == 0
    assert cost(app, k)["lines"][0] == expected_cost(20, inversion="explicit")["line"]

    click_widget(app, k, "inversion")
    choose_menu_entry(app, "fixed_point")
    assert iters_state(app, k) == {"value": 0, "disabled": False, "drawnDisabled": False}
    click_widget(app, k, "inversion_iters", "right")
    assert iters_state(app, k)["value"] == 1
    line = expected_cost(20, inversion="fixed_point", inversion_iters=1)["line"]
    assert cost(app, k)["lines"][0] == line and line in drawn_texts(app)

    set_widget(app, k, "inversion", "reference")
    assert iters_state(app, k)["disabled"] is True
    assert cost(app, k)["lines"][0] == expected_cost(20, inversion="reference", inversion_iters=1)["line"]

    set_widget(app, k, "inversion", "warm_start")  # refined inversion_iters times (0 = none)
    assert iters_state(app, k)["disabled"] is False
    assert cost(app, k)["lines"][0] == expected_cost(20, inversion="warm_start", inversion_iters=1)["line"]

    set_widget(app, k, "inversion", "fixed_point")
    set_widget(app, k, "preset", "paper LoRA")  # a preset that sets explicit greys it out again
    assert iters_state(app, k)["disabled"] is True

    # A saved workflow opens with the widget in the state its inversion gives it.
    g = add_node(app, "W2SDGuider", (500, 150))
    set_widget(app, g, "inversion", "fixed_point")
    workflow = serialize(app)
    clear(app)
    load_workflow(app, workflow)
    assert iters_state(app, k)["disabled"] is True
    assert iters_state(app, g) == {"value": 0, "disabled": False, "drawnDisabled": False}


def test_nodes_2_0_label_and_preset_stay_live(app) -> None:  # type: ignore[no-untyped-def]
    """Frontend 1.3x's opt-in Vue nodes draw a legacy widget on a canvas of its own, on request."""
    if app.evaluate("() => app.extensionManager?.setting?.get?.('Comfy.VueNodes.Enabled')") is None:
        pytest.skip("this frontend has no Nodes 2.0 (Vue nodes)")
    app.evaluate("async () => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true); }")
    try:
        k = add_node(app, "W2SDKSampler", (100, 120))
        node = app.locator(f'[data-node-id="{k}"]')
        node.wait_for(timeout=10000)
        set_widget(app, k, "window", "steps")
        set_widget(app, k, "inversion", "explicit")
        node.get_by_text("paper LoRA").wait_for(timeout=5000)  # the combo shows the synced preset
        drawn = app.evaluate(
            """(id) => {
              const label = app.graph.getNodeById(id).widgets.find((w) => w.name === 'w2sd_cost');
              const proto = CanvasRenderingContext2D.prototype;
              const original = proto.fillText;
              const seen = [];
              proto.fillText = function (text, ...rest) { seen.push(String(text)); return original.call(this, text, ...rest); };
              try { label.triggerDraw(); } finally { proto.fillText = original; }
              return seen;
            }""",
            k,
        )
        assert drawn == ["NFE 58 = 2.90x stock (20 steps)"]
    finally:
        app.evaluate(
            "async () => { await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false); }"
        )


# --- presets --------------------------------------------------------------------------------------------

# What each preset must set (the issue; docs/ALGORITHM.md for the pair values). Widgets not named keep their value.
PAPER = {
    "mode": "W2SD",
    "window": "steps",
    "reflect_steps": -1,
    "inversion": "explicit",
    "equal_budget": False,
}
SAMPLER_PRESETS = {
    "paper LoRA": {**PAPER, "cfg": 5.5},
    "official code": {**PAPER, "steps": 50, "scheduler": "ddim_uniform", "cfg": 5.5},
    "Z-Sampling": {**PAPER, "cfg": 5.5},
    "ControlNet 0.5": {**PAPER, "cfg": 5.5},
    "equal budget": {"equal_budget": True},
    "measured default": {
        "mode": "W2SD",
        "window": "percent",
        "start_percent": 0.0,
        "end_percent": 1.0,
        "inversion": "warm_start",
        "inversion_iters": 0,
        "equal_budget": False,
        "keep_sampler_history": True,
    },
    "first half": {
        "mode": "W2SD",
        "window": "percent",
        "start_percent": 0.0,
        "end_percent": 0.5,
        "inversion": "fixed_point",
        "inversion_iters": 1,
        "equal_budget": False,
    },
    "later half (euler)": {
        "mode": "W2SD",
        "window": "percent",
        "start_percent": 0.5,
        "end_percent": 1.0,
        "inversion": "fixed_point",
        "inversion_iters": 1,
        "equal_budget": False,
    },
}
PRESETS = {
    "W2SDKSampler": SAMPLER_PRESETS,
    "W2SDGuider": {k: {n: v for n, v in p.items() if n not in ("steps", "scheduler")} for k, p in SAMPLER_PRESETS.items() if k != "equal budget"},
    "W2SDLoraSplit": {
        "official code": {"main_scale": 0.8, "strong_scale": 1.5, "weak_scale": -1.5},
        "paper text": {"main_scale": 0.8, "strong_scale": 0.8, "weak_scale": -1.5},
    },
    "W2SDCFGGap": {"Z-Sampling": {"strong_cfg": 5.5, "weak_cfg": 0.0}, "official LoRA code": {"strong_cfg": 5.5, "weak_cfg": 1.0}},
    "W2SDModelPair": {
        "paper text: weights": {"strong_cfg": 1.0, "weak_cfg": 1.0},
        "paper text: ControlNet": {"strong_cfg": 0.5, "weak_cfg": 0.5},
        "sampler cfg": {"strong_cfg": -1.0, "weak_cfg": -1.0},
    },
}  # fmt: skip
# A state that matches no preset, to see each preset change exactly its widgets.
SCRAMBLED = {
    "seed": 123, "steps": 7, "cfg": 2.0, "scheduler": "karras", "denoise": 0.7, "mode": "S2WD (diagnosis)",
    "window": "percent", "start_percent": 0.1, "end_percent": 0.9, "reflect_steps": 3, "inversion": "fixed_point",
    "inversion_iters": 5, "equal_budget": False, "main_scale": 0.3, "strong_scale": 0.4, "weak_scale": -0.2,
    "strong_cfg": 2.5, "weak_cfg": 2.0, "keep_sampler_history": False,
}  # fmt: skip


@pytest.mark.parametrize(
    "node_type,preset",
    [(n, p) for n, presets in PRESETS.items() for p in presets],
    ids=lambda v: v.replace(" ", "_"),
)
def test_preset_fills_its_widgets_and_nothing_else(app, node_type: str, preset: str) -> None:  # type: ignore[no-untyped-def]
    n = add_node(app, node_type)
    before = widgets(app, n)
    for name, value in SCRAMBLED.items():
        if name in before:
            set_widget(app, n, name, value)
    before = widgets(app, n)
    assert before["preset"] == "custom"
    set_widget(app, n, "preset", preset)
    after = widgets(app, n)
    expected = {
        **before,
        **{k: v for k, v in PRESETS[node_type][preset].items() if k in before},
        "preset": preset,
    }
    assert {k: v for k, v in after.items() if k != "w2sd_cost"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "w2sd_cost"}
    )


@pytest.mark.parametrize("node_type", list(PRESETS))
def test_preset_menu_lists_exactly_the_presets(app, node_type: str) -> None:  # type: ignore[no-untyped-def]
    n = add_node(app, node_type)
    values = app.evaluate(
        "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'preset').options.values", n
    )
    assert values == ["custom", *PRESETS[node_type]]


def test_advanced_sampler_counts_its_stage_and_offers_the_sampler_presets(app) -> None:  # type: ignore[no-untyped-def]
    """W2SD KSampler (Advanced): the KSampler's presets but equal budget (refused there); the label
    counts the stage's steps and the window's steps inside it (the window counts in the whole schedule)."""
    n = add_node(app, "W2SDKSamplerAdvanced")
    values = app.evaluate(
        "(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === 'preset').options.values", n
    )
    assert values == ["custom", *(p for p in PRESETS["W2SDKSampler"] if p != "equal budget")]
    first = {
        "steps": 20, "window": "percent", "start_percent": 0.0, "end_percent": 0.5, "inversion": "explicit",
        "start_at_step": 0, "end_at_step": 10, "return_with_leftover_noise": "enable",
    }  # fmt: skip
    for name, value in first.items():
        set_widget(app, n, name, value)
    got = cost(app, n)
    assert (got["stockNfe"], got["reflected"], got["nfe"]) == (10, 10, 30)
    assert got["lines"][0] == "NFE 30 = 3.00x stock (steps 0..10 of 20)"
    for name, value in {"start_at_step": 10, "end_at_step": 10000}.items():
        set_widget(app, n, name, value)
    got = cost(app, n)
    assert (got["stockNfe"], got["reflected"], got["nfe"]) == (10, 0, 10)


def test_no_w2sd_widgets_on_other_nodes(app) -> None:  # type: ignore[no-untyped-def]
    n = add_node(app, "KSampler")
    assert not set(widgets(app, n)) & set(FRONTEND_ONLY)


def test_preset_chosen_with_real_clicks_on_the_combo_menu(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler", (100, 150))
    click_widget(app, k, "preset")
    entry = app.locator(".litecontextmenu .litemenu-entry", has_text="official code").first
    entry.wait_for(timeout=5000)
    entry.click()
    values = widgets(app, k)
    assert values["preset"] == "official code"
    assert {k2: values[k2] for k2 in SAMPLER_PRESETS["official code"]} == SAMPLER_PRESETS["official code"]
    assert "NFE 148 = 2.96x stock (50 steps)" in drawn_texts(app)


def test_preset_shows_custom_once_a_widget_leaves_it(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler")
    assert widgets(app, k)["preset"] == "measured default"  # the node's defaults are that preset
    set_widget(app, k, "preset", "paper LoRA")
    set_widget(app, k, "steps", 33)  # not part of the preset
    assert widgets(app, k)["preset"] == "paper LoRA"
    set_widget(app, k, "window", "percent")
    set_widget(app, k, "inversion", "warm_start")  # now the widgets are "measured default" again
    assert widgets(app, k)["preset"] == "measured default"
    set_widget(app, k, "end_percent", 0.6)
    assert widgets(app, k)["preset"] == "custom"


def test_frontend_widgets_have_tooltips_on_hover(app) -> None:  # type: ignore[no-untyped-def]
    k = add_node(app, "W2SDKSampler", (100, 150))
    app.evaluate("() => app.canvas.draw(true, true)")
    for name, words in (("preset", "official code"), ("w2sd_cost", "T + R x (2 + inversion iters)")):
        box = widget_box(app, k, name)
        app.mouse.move(box["x"] + 60, box["y"] + box["h"] / 2)
        app.mouse.move(box["x"] + 62, box["y"] + box["h"] / 2)
        tip = app.locator(".node-tooltip", has_text=words)
        tip.wait_for(timeout=5000)
    app.mouse.move(5, 5)


# --- what reaches the backend and the saved workflow ----------------------------------------------------


def build_full_graph(page: Any) -> dict[str, int]:
    ids = {
        "ksampler": add_node(page, "W2SDKSampler", (700, 100)),
        "guider": add_node(page, "W2SDGuider", (1050, 100)),
        "gap": add_node(page, "W2SDCFGGap", (350, 100)),
        "lora": add_node(page, "W2SDLoraSplit", (350, 300)),
        "pair": add_node(page, "W2SDModelPair", (20, 100)),
    }
    connect(page, ids["pair"], 0, ids["lora"], "pair")
    connect(page, ids["lora"], 1, ids["gap"], "pair")
    connect(page, ids["gap"], 0, ids["ksampler"], "pair")
    connect(page, ids["gap"], 0, ids["guider"], "pair")
    connect(page, ids["lora"], 0, ids["ksampler"], "model")
    return ids


def declared_inputs(info: dict[str, Any]) -> dict[str, Any]:
    return {**info["input"].get("required", {}), **info["input"].get("optional", {})}


def widget_count(info: dict[str, Any]) -> int:
    """widgets_values a frontend without this extension saves for the node."""
    n = 0
    for spec in declared_inputs(info).values():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list) or kind in WIDGET_TYPES:
            n += 2 if options.get("control_after_generate") else 1
    return n


def test_graph_to_prompt_sends_only_declared_inputs(app, object_info) -> None:  # type: ignore[no-untyped-def]
    ids = build_full_graph(app)
    set_widget(app, ids["ksampler"], "preset", "official code")
    prompt = graph_to_prompt(app)
    for node_id in ids.values():
        entry = prompt[str(node_id)]
        declared = declared_inputs(object_info[entry["class_type"]])
        assert not set(entry["inputs"]) & set(FRONTEND_ONLY), entry
        assert set(entry["inputs"]) <= set(declared), (
            entry["class_type"],
            set(entry["inputs"]) - set(declared),
        )
    sampler = prompt[str(ids["ksampler"])]["inputs"]
    assert sampler["steps"] == 50 and sampler["scheduler"] == "ddim_uniform" and sampler["window"] == "steps"
    assert sampler["pair"] == [str(ids["gap"]), 0]


def test_saved_workflow_has_no_frontend_values_and_loads_back(app, object_info) -> None:  # type: ignore[no-untyped-def]
    ids = build_full_graph(app)
    set_widget(app, ids["ksampler"], "preset", "paper LoRA")
    set_widget(app, ids["ksampler"], "steps", 37)
    set_widget(app, ids["ksampler"], "inversion", "fixed_point")
    set_widget(app, ids["guider"], "end_percent", 0.7)
    set_widget(app, ids["lora"], "preset", "paper text")
    set_widget(app, ids["gap"], "preset", "official LoRA code")
    set_widget(app, ids["pair"], "preset", "paper text: ControlNet")
    before = {i: widgets(app, i) for i in ids.values()}
    workflow = serialize(app)
    assert "preset" not in json.dumps(workflow)
    for node in workflow["nodes"]:
        assert len(node["widgets_values"]) == widget_count(object_info[node["type"]]), node
    clear(app)
    load_workflow(app, workflow)
    for node_id, values in before.items():
        after = widgets(app, node_id)
        assert {k: v for k, v in after.items() if k != "preset"} == {
            k: v for k, v in values.items() if k != "preset"
        }
    # The preset combo is not saved: after loading it names the first preset the widgets match.
    assert widgets(app, ids["ksampler"])["preset"] == "custom"  # inversion fixed_point matches none
    assert widgets(app, ids["lora"])["preset"] == "paper text"
    assert widgets(app, ids["gap"])["preset"] == "official LoRA code"
    assert widgets(app, ids["pair"])["preset"] == "paper text: ControlNet"


def test_a_workflow_saved_before_keep_sampler_history_opens_with_it_off(app) -> None:  # type: ignore[no-untyped-def]
    """Pack 0.1.0 saved W2SD nodes without keep_sampler_history, and sampled with it off: such a workflow
    opens with it off (and sends it off), where a new node gets the default, on."""
    ids = {"ksampler": add_node(app, "W2SDKSampler"), "guider": add_node(app, "W2SDGuider", (500, 100))}
    assert all(widgets(app, i)["keep_sampler_history"] is True for i in ids.values())
    workflow = serialize(app)
    for node in workflow["nodes"]:
        node["widgets_values"] = node["widgets_values"][:-1]  # keep_sampler_history is the last widget saved
    clear(app)
    load_workflow(app, workflow)
    prompt = graph_to_prompt(app)
    for i in ids.values():
        assert widgets(app, i)["keep_sampler_history"] is False
        assert prompt[str(i)]["inputs"]["keep_sampler_history"] is False
    assert widgets(app, add_node(app, "W2SDKSampler", (100, 400)))["keep_sampler_history"] is True


def shipped_workflows() -> list[Any]:
    found = for_core(core_version(comfyui_dir()))  # the family workflows need 0.29.0's nodes
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no workflows/*.json shipped yet"))]


@pytest.mark.parametrize("path", shipped_workflows(), ids=lambda p: p.stem if p else "none")
def test_shipped_workflow_loads_with_widgets_in_place(app, object_info, path: Path) -> None:  # type: ignore[no-untyped-def]
    workflow = json.loads(path.read_text())
    load_workflow(app, workflow)
    prompt = graph_to_prompt(app)
    for node in workflow["nodes"]:
        if node["type"] not in W2SD_NODES:
            continue
        values = widgets(app, node["id"])
        backend = [v for k, v in values.items() if k not in FRONTEND_ONLY]
        assert backend[: len(node["widgets_values"])] == node["widgets_values"], node["type"]
        if str(node["id"]) in prompt:
            assert not set(prompt[str(node["id"])]["inputs"]) & set(FRONTEND_ONLY)


# --- a picture for a human ------------------------------------------------------------------------------


def test_screenshot_of_the_label(app, tmp_path_factory: pytest.TempPathFactory) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    ids = build_full_graph(app)
    set_widget(app, ids["ksampler"], "preset", "paper LoRA")
    set_widget(app, ids["gap"], "preset", "Z-Sampling")
    layout = {
        ids["pair"]: (20, 40),
        ids["lora"]: (20, 360),
        ids["gap"]: (360, 40),
        ids["ksampler"]: (700, 40),
        ids["guider"]: (1060, 40),
    }
    app.evaluate(
        """(layout) => {
          for (const [id, pos] of layout) app.graph.getNodeById(id).pos = pos;
          app.canvas.ds.offset = [70, 110];
          app.canvas.ds.scale = 1;
          app.graph.setDirtyCanvas(true, true);
        }""",
        [[i, list(p)] for i, p in layout.items()],
    )
    viewport = app.viewport_size
    app.set_viewport_size({"width": 1600, "height": 1000})
    app.wait_for_timeout(500)
    path = tmp_path_factory.mktemp("w2sd-screenshot") / "w2sd_frontend.png"
    try:
        app.screenshot(path=str(path))
        box = widget_box(app, ids["ksampler"], "w2sd_cost")
    finally:
        app.set_viewport_size(viewport)
        app.wait_for_timeout(200)
    print(f"\nW2SD frontend screenshot: {path}")
    with Image.open(path) as shot:
        crop = (int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"]))
        label = np.asarray(shot.convert("RGB").crop(crop)).astype(int)
    # The first line is drawn in #f0d27a: enough of those pixels means the text is there and on screen.
    r, g, b = label[..., 0], label[..., 1], label[..., 2]
    yellow = int(((r > 200) & (g > 170) & (g < 230) & (b > 80) & (b < 160)).sum())
    assert yellow > 80, f"label text not visible in {path}"
    assert "NFE 58 = 2.90x stock (20 steps)" in drawn_texts(app)
    assert "19 reflected; cfg 5.5, sides 5.5 / 0" in drawn_texts(app)
