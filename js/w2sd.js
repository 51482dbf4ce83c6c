// W2SD frontend (Weak-to-Strong Diffusion with Reflection, arXiv 2502.00473): a live cost label on the
// W2SD KSampler (also Advanced) / guider and a `preset` combo on those and on the pair nodes. Both widgets are
// frontend-only: they are left out of the API prompt (options.serialize) and out of saved workflows
// (widget.serialize), and sit after every backend widget so positional widgets_values stay aligned.
import { app } from "../../scripts/app.js";
import { cost } from "./cost.js";
import { CUSTOM, presetsFor } from "./presets.js";

const SAMPLERS = new Set(["W2SDKSampler", "W2SDKSamplerAdvanced", "W2SDGuider"]);
const PAIR_NODES = new Set(["W2SDModelPair", "W2SDLoraSplit", "W2SDCFGGap"]);
const COST_INPUTS = [
  "steps", "cfg", "sampler_name", "mode", "window", "start_percent", "end_percent", "reflect_steps",
  "inversion", "inversion_iters", "equal_budget", "stop_ratio", "reuse_strong", "start_at_step", "end_at_step",
  "return_with_leftover_noise",
];
const BYPASS = 4;
const LINE = 16;
const LABEL_LINES = 3;
const MIN_WIDTH = 300;
const VUE_TOP = 8; // Vue nodes pull a legacy widget's canvas 13 px up, over the row above

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function sameValue(a, b) {
  return typeof a === "number" && typeof b === "number" ? Math.abs(a - b) < 1e-6 : a === b;
}

function linked(node, name) {
  return node.inputs?.some((input) => (input.widget?.name ?? input.name) === name && input.link != null) ?? false;
}

/** `inversion_iters` counts only for a fixed_point or warm_start inversion (explicit and reference ignore it, and so
 * does the label): grey it out, without its number, for the others. Left on while `inversion` comes
 * from a link, whose value the frontend cannot know. */
function syncInversionIters(node) {
  const iters = widget(node, "inversion_iters");
  const inversion = widget(node, "inversion");
  if (!iters || !inversion) return;
  const off = !["fixed_point", "warm_start"].includes(inversion.value) && !linked(node, "inversion");
  if (Boolean(iters.disabled) === off) return;
  iters.disabled = off;
  node.setDirtyCanvas?.(true, false);
}

function inputNode(node, name) {
  const slot = node.findInputSlot?.(name) ?? -1;
  return slot < 0 ? null : node.getInputNode(slot);
}

/** strong/weak cfg set by the pair nodes upstream of `node` (null: the sampler's cfg). The node closest
 * to the sampler wins, as in W2SDPair.stacked; bypassed nodes and reroutes are passed through. */
function sideCfgs(node) {
  const out = { strong_cfg: null, weak_cfg: null };
  const seen = new Set();
  let cur = inputNode(node, "pair");
  while (cur && !seen.has(cur)) {
    seen.add(cur);
    if (cur.mode !== BYPASS && (cur.comfyClass === "W2SDCFGGap" || cur.comfyClass === "W2SDModelPair")) {
      for (const key of ["strong_cfg", "weak_cfg"]) {
        const v = widget(cur, key)?.value;
        if (out[key] === null && typeof v === "number" && v >= 0) out[key] = v;
      }
    }
    if (PAIR_NODES.has(cur.comfyClass)) cur = inputNode(cur, "pair");
    else if (cur.type === "Reroute" || cur.mode === BYPASS) cur = cur.inputs?.length ? cur.getInputNode(0) : null;
    else break;
  }
  return out;
}

function costOf(node) {
  const settings = {};
  for (const name of COST_INPUTS) {
    const w = widget(node, name);
    if (w) settings[name] = w.value;
  }
  return cost({ ...settings, ...sideCfgs(node) });
}

function matches(node, preset) {
  return Object.entries(preset.values).every(([name, value]) => {
    const w = widget(node, name);
    return !w || !hasChoice(w, value) || sameValue(w.value, value);
  });
}

function hasChoice(w, value) {
  const values = w.options?.values;
  return !Array.isArray(values) || values.includes(value);
}

/** Show the chosen preset while the widgets still hold its values, else the first that matches. */
function syncPreset(node) {
  const w = widget(node, "preset");
  if (!w) return;
  const presets = presetsFor(node.comfyClass);
  const chosen = presets.find((p) => p.name === w.value);
  if (chosen && matches(node, chosen)) return;
  const name = presets.find((p) => matches(node, p))?.name ?? CUSTOM;
  // Through the callback: Vue nodes wrap it to update their copy of the value. Applying a preset
  // the widgets already match changes nothing.
  if (w.callback) w.callback(name, app.canvas, node);
  w.value = name;
}

/** Set a widget as the canvas would, so its own callback and Vue nodes see the change. */
function setWidget(node, w, value) {
  w.value = value;
  w.callback?.call(w, value, app.canvas, node);
}

function applyPreset(node, name) {
  const preset = presetsFor(node.comfyClass).find((p) => p.name === name);
  if (!preset) return;
  let changed = false;
  for (const [key, value] of Object.entries(preset.values)) {
    const w = widget(node, key);
    if (!w || !hasChoice(w, value) || sameValue(w.value, value)) continue;
    setWidget(node, w, value);
    changed = true;
  }
  widget(node, "preset").value = name;
  if (!changed) return;
  syncInversionIters(node);
  redrawLabels(node.graph);
  if (node.graph) node.graph._version++;
  node.setDirtyCanvas?.(true, true);
}

function presetTooltip(presets) {
  return [
    "Fill the widgets with a published setting (frontend only: not sent to the server, not saved).",
    "'custom' = the widgets match no preset.",
    ...presets.map((p) => `${p.name}: ${p.help}`),
  ].join("\n");
}

function addPresetWidget(node) {
  const presets = presetsFor(node.comfyClass);
  const w = node.addWidget("combo", "preset", CUSTOM, (value) => applyPreset(node, value), {
    values: [CUSTOM, ...presets.map((p) => p.name)],
    serialize: false,
  });
  w.serialize = false;
  w.tooltip = presetTooltip(presets);
  syncPreset(node);
}

/** Nodes 2.0 (Vue nodes, frontend 1.3x, opt-in) give a legacy widget one row: the label shrinks to its first line. */
function vueNodes() {
  return app.extensionManager?.setting?.get?.("Comfy.VueNodes.Enabled") === true;
}

/** Vue nodes draw a legacy widget on a canvas of its own, only when asked: ask after each change. */
function redrawLabels(graph) {
  for (const node of graph?._nodes ?? []) {
    if (SAMPLERS.has(node.comfyClass)) widget(node, "w2sd_cost")?.triggerDraw?.();
  }
}

function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let t = text;
  while (t.length > 1 && ctx.measureText(`${t}…`).width > width) t = t.slice(0, -1);
  return `${t}…`;
}

function addCostWidget(node) {
  const label = {
    name: "w2sd_cost",
    type: "w2sd_cost",
    value: "",
    serialize: false,
    options: { serialize: false },
    tooltip:
      "Model evaluations (NFE) against a stock KSampler with the same steps: T + R x (2 + inversion iters) " +
      "for R reflected steps (Re-Sampling vanilla: + R). Passes count a cfg != 1 evaluation twice " +
      "(cond + uncond); a side at cfg 0 or 1 is one pass. Paper: NFE = T + 2 lambda (explicit inversion). " +
      "With window = sigma the reflected steps depend on the schedule and the model's noise levels, which the " +
      "label cannot know: it shows the range (exact for 0..1, every step but the last).",
    computeSize(width) {
      return [width ?? node.size[0], vueNodes() ? LINE + 4 + VUE_TOP : LINE * LABEL_LINES + 8];
    },
    draw(ctx, drawNode, width, top) {
      const { lines: all, warning } = drawNode.w2sdCost;
      const vue = vueNodes();
      const lines = vue ? [warning ?? all[0]] : all;
      const y = vue ? top + VUE_TOP : top;
      const margin = 15;
      const h = LINE * lines.length + 4;
      ctx.save();
      ctx.fillStyle = "rgba(0, 0, 0, 0.35)";
      ctx.beginPath();
      if (ctx.roundRect) ctx.roundRect(margin, y, width - margin * 2, h, 6);
      else ctx.rect(margin, y, width - margin * 2, h);
      ctx.fill();
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      lines.forEach((text, i) => {
        ctx.font = i === 0 ? "bold 12px Arial, sans-serif" : "12px Arial, sans-serif";
        ctx.fillStyle = warning && i === lines.length - 1 ? "#ff9966" : i === 0 ? "#f0d27a" : "#c8c8c8";
        ctx.fillText(fitText(ctx, text, width - margin * 2 - 16), margin + 8, y + 2 + LINE * (i + 0.5));
      });
      ctx.restore();
    },
  };
  node.addCustomWidget(label);
}

/**
 * Workflows saved before keep_sampler_history existed (pack 0.1.0) sampled with it off: they open with it
 * off, where a new node gets its default (on). A prompt sent to the API without it runs with it off too.
 */
function savedWithoutHistorySetting(node, info) {
  const w = widget(node, "keep_sampler_history");
  const saved = info?.widgets_values;
  if (!w || !Array.isArray(saved)) return false;
  return node.widgets.filter((x) => x.serialize !== false).indexOf(w) >= saved.length; // as the workflow saves them
}

function chain(proto, name, fn) {
  const previous = proto[name];
  proto[name] = function (...args) {
    const r = previous?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

app.registerExtension({
  name: "w2sd.cost",
  loadedGraphNode(node) {
    if (!node.w2sdSavedWithoutHistory) return;
    delete node.w2sdSavedWithoutHistory;
    const w = widget(node, "keep_sampler_history");
    w.value = false;
    w.callback?.(false);
    syncPreset(node);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const id = nodeData.name;
    if (!SAMPLERS.has(id) && !PAIR_NODES.has(id)) return;
    const proto = nodeType.prototype;
    chain(proto, "onNodeCreated", function () {
      addPresetWidget(this);
      if (SAMPLERS.has(id)) {
        addCostWidget(this);
        syncInversionIters(this);
      }
      const [w, h] = this.computeSize();
      const minWidth = SAMPLERS.has(id) ? MIN_WIDTH : 0;
      this.setSize([Math.max(this.size[0], w, minWidth), Math.max(this.size[1], h)]);
    });
    chain(proto, "onWidgetChanged", function (name) {
      if (name !== "preset") syncPreset(this);
      if (name === "inversion") syncInversionIters(this);
      redrawLabels(this.graph);
    });
    chain(proto, "onConnectionsChange", function () {
      syncInversionIters(this);
      redrawLabels(this.graph);
    });
    chain(proto, "onConfigure", function (info) {
      // The frontend fills the widgets from widgets_values after this call: loadedGraphNode acts on it.
      this.w2sdSavedWithoutHistory = savedWithoutHistorySetting(this, info);
      syncPreset(this);
      syncInversionIters(this);
    });
    if (SAMPLERS.has(id)) {
      Object.defineProperty(proto, "w2sdCost", {
        configurable: true,
        get() {
          return costOf(this);
        },
      });
    }
  },
});
