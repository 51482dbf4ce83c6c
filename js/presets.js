// Preset table for the frontend-only `preset` combo on W2SD nodes. Pure data (no DOM): a preset sets
// only the widgets a node has; `scheduler` is set only if the choice exists in that node's list.
// Sources: docs/ALGORITHM.md (what the paper's text says vs. what the official code runs) and
// the paper, arXiv 2502.00473 (Sec. 4, Appendix, Fig. 13, Table 7).

const PAPER_WINDOW = { mode: "W2SD", window: "steps", reflect_steps: -1, inversion: "explicit", equal_budget: false, stop_ratio: 0, reuse_strong: false };
// The measured presets: a percent window (benchmarks/results/learned.md).
const MEASURED = { mode: "W2SD", window: "percent", equal_budget: false, stop_ratio: 0, reuse_strong: false };
const FIXED_POINT_1 = { ...MEASURED, inversion: "fixed_point", inversion_iters: 1 };

export const PRESETS = {
  W2SDKSampler: [
    {
      // Paper text, weight-difference (LoRA) runs: reflect every step but the last (lambda = T-1),
      // explicit inversion, CFG 5.5 for the regular step (sides at CFG 1.0: set them on the pair).
      name: "paper LoRA",
      values: { ...PAPER_WINDOW, cfg: 5.5 },
      help: "Paper text (LoRA pair): lambda = T-1, explicit inversion, regular-step cfg 5.5; side cfg 1.0 / 1.0 on the pair.",
    },
    {
      // docs/ALGORITHM.md "What the official code actually runs" (w2sd_lora.py): 50 DDIM "leading" steps
      // (ComfyUI ddim_uniform), lambda = T-1, CFG 5.5 regular step.
      name: "official code",
      values: { ...PAPER_WINDOW, steps: 50, scheduler: "ddim_uniform", cfg: 5.5 },
      help: "Official code (w2sd_lora.py): 50 ddim_uniform steps, lambda = T-1, cfg 5.5; pair: LoRA split 0.8 / +1.5 / -1.5 + CFG gap 5.5 / 1.0.",
    },
    {
      // docs/ALGORITHM.md pair table, "condition: CFG (= Z-Sampling)": W2SD with the CFG gap pair, every step.
      name: "Z-Sampling",
      values: { ...PAPER_WINDOW, cfg: 5.5 },
      help: "Z-Sampling (CFG gap as the pair): lambda = T-1, cfg 5.5; pair: CFG gap 5.5 / 0.",
    },
    {
      // Paper text, pipeline difference (ControlNet): reflection sides at CFG 0.5, regular step 5.5.
      name: "ControlNet 0.5",
      values: { ...PAPER_WINDOW, cfg: 5.5 },
      help: "Paper text (ControlNet on the strong side): lambda = T-1, cfg 5.5; side cfg 0.5 / 0.5 on the pair.",
    },
    {
      // Paper Fig. 13 / docs/ALGORITHM.md "Cost and the equal-budget setting": floor(T/2) steps, floor(T/4) reflected.
      name: "equal budget",
      values: { equal_budget: true },
      only: ["W2SDKSampler"],
      help: "Paper Fig. 13: no more NFE than stock `steps` (floor(T/2) steps, first floor(T/4) reflected). KSampler only.",
    },
    {
      // benchmarks/results/learned.md, "The defaults question": the node's defaults since 0.2.0.
      name: "measured default",
      values: {
        ...MEASURED, start_percent: 0.0, end_percent: 1.0, inversion: "warm_start", inversion_iters: 0,
        keep_sampler_history: true,
      },
      help: "The node's defaults (measured on trained EPS and flow models, 4-20 steps): every step but the last, the warm_start inversion (exact at any step size when the sides agree), the sampler's own history kept through the window.",
    },
    {
      // The defaults of 0.1.0: the first half with one fixed-point iteration.
      name: "first half",
      values: { ...FIXED_POINT_1, start_percent: 0.0, end_percent: 0.5 },
      help: "The defaults before 0.2.0: reflect the first half of the steps, fixed-point inversion with 1 iteration. Cheaper (2.5x stock's NFE where the default costs 2.9x) and a smaller effect.",
    },
    {
      // benchmarks/results/learned.md, "The warm_start inversion ...": with euler on a flow model's simple
      // schedule the later half of the steps carries the gain; with karras schedules it does nothing.
      name: "later half (euler)",
      values: { ...FIXED_POINT_1, start_percent: 0.5, end_percent: 1.0 },
      help: "Measured with euler on flow (SD3-style) digit models: reflecting the later half of the steps moved the class ratio most per NFE (two checkpoints +0.106, LoRA +0.236 at 2.2x stock's NFE, where the first half gave +0.034 / +0.050). With karras schedules it does nothing: keep the measured default there.",
    },
  ],
  W2SDLoraSplit: [
    {
      // docs/ALGORITHM.md "What the official code actually runs": LoRA 0.8 regular, +1.5 strong, -1.5 weak.
      name: "official code",
      values: { main_scale: 0.8, strong_scale: 1.5, weak_scale: -1.5 },
      help: "Official code (w2sd_lora.py): main 0.8, strong +1.5, weak -1.5.",
    },
    {
      // docs/ALGORITHM.md pair table, "weight: LoRA": the paper's text uses +0.8 / -1.5.
      name: "paper text",
      values: { main_scale: 0.8, strong_scale: 0.8, weak_scale: -1.5 },
      help: "Paper text (Table 7): strong +0.8, weak -1.5, main 0.8.",
    },
  ],
  W2SDCFGGap: [
    {
      // docs/ALGORITHM.md pair table, "condition: CFG (= Z-Sampling)": 5.5 vs 0 (unconditional).
      name: "Z-Sampling",
      values: { strong_cfg: 5.5, weak_cfg: 0.0 },
      help: "Z-Sampling: strong cfg 5.5, weak cfg 0 (unconditional, one pass).",
    },
    {
      // docs/ALGORITHM.md "What the official code actually runs": strong CFG 5.5, weak inversion CFG 1.0.
      // (The paper's text, 1.0 / 1.0 on both sides, is no gap: it belongs on the model pair.)
      name: "official LoRA code",
      values: { strong_cfg: 5.5, weak_cfg: 1.0 },
      help: "Official LoRA code: strong cfg 5.5, weak cfg 1.0 (stack on a LoRA split).",
    },
  ],
  W2SDModelPair: [
    {
      // docs/ALGORITHM.md "What the official code actually runs", last bullet: paper text, weight-difference runs.
      name: "paper text: weights",
      values: { strong_cfg: 1.0, weak_cfg: 1.0 },
      help: "Paper text (weight difference): both sides at cfg 1.0 during reflections.",
    },
    {
      // Same bullet: ControlNet runs use cfg 0.5 on both sides during reflections.
      name: "paper text: ControlNet",
      values: { strong_cfg: 0.5, weak_cfg: 0.5 },
      help: "Paper text (ControlNet): both sides at cfg 0.5 during reflections.",
    },
    {
      name: "sampler cfg",
      values: { strong_cfg: -1.0, weak_cfg: -1.0 },
      help: "Both sides use the sampler's cfg (-1).",
    },
  ],
};
PRESETS.W2SDGuider = PRESETS.W2SDKSampler.filter((p) => !p.only || p.only.includes("W2SDGuider"));
PRESETS.W2SDKSamplerAdvanced = PRESETS.W2SDKSampler.filter((p) => !p.only || p.only.includes("W2SDKSamplerAdvanced"));

export const CUSTOM = "custom";

/** Presets for a node type, or [] if it has none. */
export function presetsFor(nodeType) {
  return PRESETS[nodeType] ?? [];
}
