// Cost of a W2SD run in model evaluations (NFE) and in model passes, against a stock KSampler.
// Pure: no DOM, no ComfyUI import, so node --test can load it. The rules mirror the Python side
// (nodes/reflection_inputs.py, nodes/guider.py, w2sd_core budget/window); keep them in step.

// nodes/reflection_inputs.py MODE_CHOICES: widget label -> core mode.
export const MODES = {
  W2SD: "w2sd",
  "Re-Sampling (vanilla)": "resample",
  "Re-Sampling (aligned)": "resample_aligned",
  "S2WD (diagnosis)": "s2wd",
};

// nodes/guider.py EVALS_PER_STEP: samplers that evaluate the model more than once per step.
export const EVALS_PER_STEP = {
  heun: 2, heunpp2: 3, dpm_2: 2, dpm_2_ancestral: 2, dpmpp_2s_ancestral: 2,
  dpmpp_2s_ancestral_cfg_pp: 2, dpmpp_sde: 2, dpmpp_sde_gpu: 2, seeds_2: 2, seeds_3: 3,
  sa_solver_pece: 2, gradient_estimation: 1,
};

/** A window in sigma (ComfyUI's noise percents, w2sd_core/window.py `sigma_percent`) over `can` steps that
 * can reflect, as { low, high }. The steps it holds depend on the schedule and on the model's noise levels,
 * which the frontend does not know: 0..1 is every step that can reflect whatever the schedule, start == end
 * one noise level (one step at most, none at 1: sigma 0), anything else from none to all. */
export function sigmaWindowRange(can, { start_percent = 0, end_percent = 0.5 } = {}) {
  if (start_percent > end_percent || start_percent >= 1) return { low: 0, high: 0 };
  if (start_percent <= 0 && end_percent >= 1) return { low: can, high: can };
  return { low: 0, high: start_percent === end_percent ? Math.min(1, can) : can };
}

/** Steps that reflect out of `steps`; the last step (into sigma 0) never does. A window in sigma: the most
 * it can reflect (sigmaWindowRange). */
export function reflectedSteps(steps, { window = "percent", start_percent = 0, end_percent = 0.5, reflect_steps = -1 } = {}) {
  const last = Math.max(steps - 1, 0);
  if (window === "steps") return reflect_steps < 0 ? last : Math.min(reflect_steps, last);
  if (window === "sigma") return sigmaWindowRange(last, { start_percent, end_percent }).high;
  let n = 0;
  for (let i = 0; i < last; i++) {
    const at = i / steps;
    if (start_percent <= at && at < end_percent) n++;
  }
  return n;
}

/** One stage of W2SD KSampler (Advanced): steps [start_at_step, end_at_step) of `steps`, or null for
 * the whole schedule. The window counts in the whole schedule (w2sd_core/window.py `stage`); a stage
 * that ends early without leftover noise goes into sigma 0 at its last step, which never reflects. */
export function stageOf(steps, { start_at_step = null, end_at_step = 10000, return_with_leftover_noise = "disable" } = {}) {
  if (start_at_step == null) return null;
  const end = Math.min(end_at_step, steps);
  return { start: start_at_step, end, toZero: end === steps || return_with_leftover_noise !== "enable" };
}

/** Steps of `stage` that reflect: the window's steps of the whole `steps` schedule that the stage holds. A
 * window in sigma reads each step's own sigma: the most it can reflect of the stage's (sigmaWindowRange). */
export function reflectedInStage(steps, stage, { window = "percent", start_percent = 0, end_percent = 0.5, reflect_steps = -1 } = {}) {
  let n = 0;
  for (let j = stage.start; j < stage.end; j++) {
    if (j === stage.end - 1 && stage.toZero) break;
    const inWindow =
      window === "steps" ? reflect_steps < 0 || j < reflect_steps
      : window === "sigma" || (start_percent <= j / steps && j / steps < end_percent);
    if (inWindow) n++;
  }
  return window === "sigma" ? sigmaWindowRange(n, { start_percent, end_percent }).high : n;
}

/** Extra evaluations of one reflected step (w2sd_core/budget.py reflection_cost). */
export function reflectionCost(mode, iters = 0) {
  return (MODES[mode] ?? mode) === "resample" ? 1 : 2 + iters;
}

/** Paper Fig. 13 (w2sd_core/budget.py equal_budget_plan): floor(T/2) steps, the first floor(T/4)
 * reflected, fewer if fixed-point iterations would overspend the stock budget. */
export function equalBudgetPlan(steps, iters = 0) {
  const half = Math.floor(steps / 2);
  return { steps: half, reflected: Math.max(0, Math.min(Math.floor(half / 2), Math.floor((steps - half) / (2 + iters)))) };
}

/** Fixed-point refinements actually run (guider.py inversion_refinements: fixed_point means at least 1,
 * warm_start as given, explicit and reference none). */
export function inversionIters({ inversion = "explicit", inversion_iters = 0 } = {}) {
  if (inversion === "fixed_point") return Math.max(inversion_iters, 1);
  return inversion === "warm_start" ? inversion_iters : 0;
}

/** Model evaluations per reflected step, by side. S2WD swaps which side denoises and which inverts. */
export function evalsPerReflection(mode, iters) {
  switch (MODES[mode] ?? mode) {
    case "resample": return { strong: 1, weak: 0 };
    case "resample_aligned": return { strong: 1, weak: 1 + iters };
    case "s2wd": return { strong: 1 + iters, weak: 1 };
    default: return { strong: 1, weak: 1 + iters };
  }
}

/** Fewest steps an adaptive window (stop_ratio > 0, w2sd_core/adaptive.py) reflects out of `reflected`:
 * it stops only after a reflection smaller than the largest before it, so never before the second. */
export function adaptiveMinimum(reflected, stop_ratio = 0) {
  return stop_ratio > 0 ? Math.min(2, reflected) : reflected;
}

/** "a" or "a..b" when a range differs. */
function span(a, b, fmt = String) {
  return a === b ? fmt(a) : `${fmt(a)}..${fmt(b)}`;
}

/** Passes of one evaluation of the regular step: ComfyUI skips the uncond pass only at cfg 1. */
export function mainPasses(cfg) {
  return cfg === 1 ? 1 : 2;
}

/** Passes of one side evaluation: the guider also runs cfg 0 as the negative alone (one pass). */
export function sidePasses(cfg) {
  return cfg === 1 || cfg === 0 ? 1 : 2;
}

/** What the server's validation (nodes/reflection_inputs.py) will refuse, in a few words; or null. */
export function windowProblem(steps, { window = "percent", start_percent = 0, end_percent = 0.5, reflect_steps = -1, equal_budget = false } = {}) {
  if (equal_budget) return steps < 2 ? "equal budget needs steps >= 2" : null;
  if (window === "steps" && reflect_steps > steps - 1) return `reflect_steps ${reflect_steps} > ${steps - 1}: refused`;
  if ((window === "percent" || window === "sigma") && start_percent > end_percent) return "start_percent > end_percent: refused";
  return null;
}

/** A cfg as a user typed it: 5.5, 1, 0.25 (the widget rounds to 0.01). */
function num(x) {
  return String(Number(Number(x).toFixed(2)));
}

/**
 * The cost of one node's settings. `s` holds widget values by widget name (steps, cfg, sampler_name,
 * mode, window, start_percent, end_percent, reflect_steps, inversion, inversion_iters, equal_budget,
 * stop_ratio, reuse_strong) and, when known from the pair's nodes, strong_cfg / weak_cfg (null: the sampler's cfg).
 * Without `steps` (the guider) only the per-reflected-step cost is known. With an adaptive window
 * (stop_ratio > 0) or a window in sigma (its steps depend on the schedule) the cost is a range: `nfeMin`..`nfe`.
 */
export function cost(s) {
  const cfg = Number(s.cfg ?? 1);
  const iters = inversionIters(s);
  const side = evalsPerReflection(s.mode ?? "W2SD", iters);
  const strongCfg = s.strong_cfg ?? cfg;
  const weakCfg = s.weak_cfg ?? cfg;
  // reuse_strong (W2SD mode): the next regular evaluation is the reflection's strong one.
  const reused = s.reuse_strong && (MODES[s.mode ?? "W2SD"] ?? s.mode) === "w2sd" ? 1 : 0;
  const perReflection = side.strong + side.weak - reused;
  const passesPerReflection = side.strong * sidePasses(strongCfg) + side.weak * sidePasses(weakCfg) - reused * mainPasses(cfg);
  const cfgNote = s.strong_cfg == null && s.weak_cfg == null
    ? `cfg ${num(cfg)}`
    : `cfg ${num(cfg)}, sides ${num(strongCfg)} / ${num(weakCfg)}`;

  if (s.steps == null) {
    const stepPasses = mainPasses(cfg);
    // Without steps only the percent order is checkable; equal_budget needs the KSampler's steps.
    const warning = s.equal_budget ? "equal_budget: KSampler only, refused" : windowProblem(Infinity, { ...s, reflect_steps: -1 });
    const lines = [
      `+${perReflection.toFixed(1)} NFE per reflected step`,
      `+${passesPerReflection} passes per reflected step`,
      warning ?? `a regular step: ${stepPasses} passes; ${cfgNote}`,
    ];
    return {
      nfe: null, stockNfe: null, ratio: null, passes: null, stockPasses: null, passRatio: null,
      perReflection, passesPerReflection, stepPasses, warning, lines, text: lines.join("\n"),
    };
  }

  const schedule = Math.max(Math.trunc(Number(s.steps)), 0);
  const stage = stageOf(schedule, s);
  const stockSteps = stage ? Math.max(stage.end - stage.start, 0) : schedule;
  const evalsPerStep = EVALS_PER_STEP[s.sampler_name] ?? 1;
  let steps = stockSteps;
  let reflected;
  let fewest; // a window in sigma: the fewest steps it can hold
  if (stage) {
    reflected = reflectedInStage(schedule, stage, s);
    const can = reflectedInStage(schedule, stage, { window: "steps", reflect_steps: -1 });
    if (s.window === "sigma") fewest = sigmaWindowRange(can, s).low;
  } else if (s.equal_budget) {
    // nodes/reflection_inputs.py plans with the iterations that run (fixed_point: at least 1).
    const plan = equalBudgetPlan(stockSteps, iters);
    steps = plan.steps;
    reflected = plan.reflected;
  } else {
    reflected = reflectedSteps(steps, s);
    if (s.window === "sigma") fewest = sigmaWindowRange(Math.max(steps - 1, 0), s).low;
  }
  fewest ??= reflected;
  const warning = stage && s.equal_budget ? "equal_budget: W2SD KSampler only, refused" : windowProblem(schedule, s);
  const reflectedMin = adaptiveMinimum(fewest, Number(s.stop_ratio ?? 0));
  const notes = [
    ...(fewest < reflected ? ["depends on the schedule"] : []),
    ...(adaptiveMinimum(reflected, Number(s.stop_ratio ?? 0)) < reflected ? ["adaptive"] : []),
  ];
  const stockNfe = stockSteps * evalsPerStep;
  const nfe = steps * evalsPerStep + reflected * perReflection;
  const nfeMin = steps * evalsPerStep + reflectedMin * perReflection;
  const stockPasses = stockNfe * mainPasses(cfg);
  const passes = steps * evalsPerStep * mainPasses(cfg) + reflected * passesPerReflection;
  const passesMin = steps * evalsPerStep * mainPasses(cfg) + reflectedMin * passesPerReflection;
  const ratio = stockNfe > 0 ? nfe / stockNfe : 0;
  const ratioMin = stockNfe > 0 ? nfeMin / stockNfe : 0;
  const passRatio = stockPasses > 0 ? passes / stockPasses : 0;
  const passRatioMin = stockPasses > 0 ? passesMin / stockPasses : 0;
  const stepsNote = stage
    ? `steps ${stage.start}..${Math.max(stage.end, stage.start)} of ${schedule}`
    : s.equal_budget ? `${steps} of ${stockSteps} steps` : `${steps} steps`;
  const x = (r) => r.toFixed(2);
  const lines = [
    `NFE ${span(nfeMin, nfe)} = ${span(x(ratioMin), x(ratio))}x stock (${stepsNote})`,
    `passes ${span(passesMin, passes)} = ${span(x(passRatioMin), x(passRatio))}x stock`,
    warning ?? `${span(reflectedMin, reflected)} reflected${notes.length ? ` (${notes.join(", ")})` : ""}; ${cfgNote}`,
  ];
  return {
    nfe, nfeMin, stockNfe, ratio, passes, stockPasses, passRatio, steps, stockSteps, reflected,
    reflectedMin, perReflection, passesPerReflection, warning, lines, text: lines.join("\n"),
  };
}
