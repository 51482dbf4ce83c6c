// Unit test of js/cost.js (pure, no DOM): run with `node --test tests/browser/cost.test.mjs`
// (tests/browser/test_w2sd_frontend.py runs it as part of pytest).
import assert from "node:assert/strict";
import { test } from "node:test";

import { cost, equalBudgetPlan, reflectedInStage, reflectedSteps, sigmaWindowRange, stageOf } from "../../js/cost.js";

const base = {
  steps: 20, cfg: 5.5, sampler_name: "euler", mode: "W2SD", window: "percent", start_percent: 0,
  end_percent: 0.5, reflect_steps: -1, inversion: "explicit", inversion_iters: 3, equal_budget: false,
};

test("reflected steps: window by steps", () => {
  assert.equal(reflectedSteps(20, { window: "steps", reflect_steps: -1 }), 19);
  assert.equal(reflectedSteps(20, { window: "steps", reflect_steps: 5 }), 5);
  assert.equal(reflectedSteps(20, { window: "steps", reflect_steps: 0 }), 0);
  assert.equal(reflectedSteps(20, { window: "steps", reflect_steps: 30 }), 19);
  assert.equal(reflectedSteps(1, { window: "steps", reflect_steps: -1 }), 0);
});

test("reflected steps: window by percent, start <= i/T < end, never the last step", () => {
  assert.equal(reflectedSteps(20, { window: "percent", start_percent: 0, end_percent: 0.5 }), 10);
  assert.equal(reflectedSteps(10, { window: "percent", start_percent: 0.25, end_percent: 0.75 }), 5);
  assert.equal(reflectedSteps(10, { window: "percent", start_percent: 0, end_percent: 1 }), 9);
  assert.equal(reflectedSteps(10, { window: "percent", start_percent: 0.5, end_percent: 0.5 }), 0);
  assert.equal(reflectedSteps(3, { window: "percent", start_percent: 0, end_percent: 0.34 }), 2);
});

test("paper lambda = T-1: NFE = T + 2 lambda", () => {
  const c = cost({ ...base, window: "steps" });
  assert.equal(c.nfe, 58);
  assert.equal(c.stockNfe, 20);
  assert.equal(c.ratio, 2.9);
  assert.equal(c.passes, 116);
  assert.equal(c.lines[0], "NFE 58 = 2.90x stock (20 steps)");
  assert.equal(c.lines[1], "passes 116 = 2.90x stock");
  assert.equal(c.lines[2], "19 reflected; cfg 5.5");
});

test("inversion: fixed_point adds iters (at least 1) weak evaluations, warm_start iters, explicit/reference none", () => {
  assert.equal(cost({ ...base, inversion: "fixed_point", inversion_iters: 3 }).nfe, 20 + 10 * 5);
  assert.equal(cost({ ...base, inversion: "fixed_point", inversion_iters: 0 }).nfe, 20 + 10 * 3);
  assert.equal(cost({ ...base, inversion: "reference", inversion_iters: 3 }).nfe, 40);
  assert.equal(cost({ ...base, inversion: "warm_start", inversion_iters: 0 }).nfe, 40);
  assert.equal(cost({ ...base, inversion: "warm_start", inversion_iters: 2 }).nfe, 20 + 10 * 4);
  assert.equal(cost({ ...base, inversion: "warm_start", inversion_iters: 0, reuse_strong: true }).nfe, 30);
});

test("modes: S2WD and aligned Re-Sampling cost a reflection, vanilla Re-Sampling one evaluation", () => {
  const fp = { ...base, inversion: "fixed_point", inversion_iters: 2 };
  assert.equal(cost({ ...fp, mode: "S2WD (diagnosis)" }).nfe, 20 + 10 * 4);
  assert.equal(cost({ ...fp, mode: "Re-Sampling (aligned)" }).nfe, 20 + 10 * 4);
  assert.equal(cost({ ...fp, mode: "Re-Sampling (vanilla)" }).nfe, 20 + 10);
});

test("equal budget: floor(T/2) steps, floor(T/4) reflected, no more NFE than stock", () => {
  assert.deepEqual(equalBudgetPlan(20), { steps: 10, reflected: 5 });
  assert.deepEqual(equalBudgetPlan(7), { steps: 3, reflected: 1 });
  const c = cost({ ...base, steps: 21, equal_budget: true });
  assert.equal(c.nfe, 10 + 2 * 5);
  assert.equal(c.stockNfe, 21);
  assert.equal(c.lines[0], "NFE 20 = 0.95x stock (10 of 21 steps)");
  // Fixed-point iterations shrink lambda to what the saved evaluations pay for: 10 + 2 * 5 <= 20.
  assert.deepEqual(equalBudgetPlan(20, 3), { steps: 10, reflected: 2 });
  const fp = cost({ ...base, equal_budget: true, inversion: "fixed_point", inversion_iters: 3 });
  assert.equal(fp.nfe, 10 + 2 * 5);
  assert.ok(fp.nfe <= fp.stockNfe);
  // fixed_point with 0 iterations runs 1 (nodes/guider.py core_inversion), and the plan pays for it.
  const fp0 = cost({ ...base, steps: 21, equal_budget: true, inversion: "fixed_point", inversion_iters: 0 });
  assert.deepEqual(equalBudgetPlan(21, 1), { steps: 10, reflected: 3 });
  assert.equal(fp0.nfe, 10 + 3 * 3);
  assert.ok(fp0.nfe <= fp0.stockNfe);
});

test("passes: cfg 1 is one pass per evaluation; side cfg 0 or 1 is one pass", () => {
  assert.equal(cost({ ...base, cfg: 1 }).passes, 40);
  assert.equal(cost({ ...base, cfg: 1 }).stockPasses, 20);
  const z = cost({ ...base, window: "steps", strong_cfg: 5.5, weak_cfg: 0 });
  assert.equal(z.nfe, 58);
  assert.equal(z.passes, 20 * 2 + 19 * (2 + 1));
  assert.equal(z.lines[2], "19 reflected; cfg 5.5, sides 5.5 / 0");
  // The main cfg 0 still runs cond + uncond in ComfyUI; a side at cfg 0 is the negative alone.
  assert.equal(cost({ ...base, cfg: 0 }).passes, 20 * 2 + 10 * 2);
  // S2WD swaps the roles: the strong side inverts (1 + iters evaluations).
  const s = cost({ ...base, mode: "S2WD (diagnosis)", inversion: "fixed_point", inversion_iters: 2, strong_cfg: 5.5, weak_cfg: 0 });
  assert.equal(s.passesPerReflection, 3 * 2 + 1);
});

test("multi-evaluation samplers scale the regular steps", () => {
  const c = cost({ ...base, sampler_name: "heun" });
  assert.equal(c.stockNfe, 40);
  assert.equal(c.nfe, 40 + 20);
});

test("guider: per reflected step only", () => {
  const { steps, ...guider } = base;
  const c = cost(guider);
  assert.equal(c.nfe, null);
  assert.equal(c.perReflection, 2);
  assert.equal(c.lines[0], "+2.0 NFE per reflected step");
  assert.equal(c.lines[1], "+4 passes per reflected step");
  assert.equal(cost({ ...guider, mode: "Re-Sampling (vanilla)" }).lines[0], "+1.0 NFE per reflected step");
  assert.equal(cost({ ...guider, inversion: "fixed_point", inversion_iters: 3 }).lines[0], "+5.0 NFE per reflected step");
  assert.match(cost({ ...guider, equal_budget: true }).lines[2], /KSampler only/);
});

test("adaptive window: a range from two reflected steps to the whole window", () => {
  const fp = { ...base, inversion: "fixed_point", inversion_iters: 1 };
  const c = cost({ ...fp, stop_ratio: 0.1 });
  assert.equal(c.nfeMin, 20 + 2 * 3);
  assert.equal(c.nfe, 20 + 10 * 3);
  assert.equal(c.lines[0], "NFE 26..50 = 1.30..2.50x stock (20 steps)");
  assert.equal(c.lines[1], "passes 52..100 = 1.30..2.50x stock");
  assert.equal(c.lines[2], "2..10 reflected (adaptive); cfg 5.5");
  // Off (0) is the fixed window's single figure; a one-step window cannot stop earlier.
  assert.equal(cost({ ...fp, stop_ratio: 0 }).lines[0], "NFE 50 = 2.50x stock (20 steps)");
  const one = cost({ ...fp, window: "steps", reflect_steps: 1, stop_ratio: 0.5 });
  assert.equal(one.lines[0], "NFE 23 = 1.15x stock (20 steps)");
  assert.equal(one.lines[2], "1 reflected; cfg 5.5");
});

test("reuse_strong: one main evaluation (and its passes) less per reflected step, W2SD mode only", () => {
  const fp = { ...base, inversion: "fixed_point", inversion_iters: 1, strong_cfg: 5.5, weak_cfg: 0 };
  const c = cost({ ...fp, reuse_strong: true });
  assert.equal(c.nfe, 20 + 10 * 2);
  assert.equal(c.passes, 20 * 2 + 10 * (2 + 2 * 1 - 2));
  assert.equal(c.lines[0], "NFE 40 = 2.00x stock (20 steps)");
  assert.equal(cost({ ...fp, reuse_strong: true, mode: "S2WD (diagnosis)" }).nfe, 20 + 10 * 3);
  const { steps, ...guider } = fp;
  assert.equal(cost({ ...guider, reuse_strong: true }).lines[0], "+2.0 NFE per reflected step");
});

test("settings the server refuses are flagged", () => {
  assert.match(cost({ ...base, window: "steps", reflect_steps: 25 }).warning, /reflect_steps 25 > 19/);
  assert.match(cost({ ...base, start_percent: 0.6, end_percent: 0.5 }).warning, /start_percent > end_percent/);
  assert.equal(cost(base).warning, null);
});

test("KSampler (Advanced) stage: the window counts in the whole schedule, as w2sd_core's stage window", () => {
  const first = stageOf(20, { start_at_step: 0, end_at_step: 10, return_with_leftover_noise: "enable" });
  const second = stageOf(20, { start_at_step: 10, end_at_step: 10000 });
  const half = { window: "percent", start_percent: 0, end_percent: 0.5 };
  assert.equal(reflectedInStage(20, first, half), 10);
  assert.equal(reflectedInStage(20, second, half), 0);
  const all = { window: "steps", reflect_steps: -1 };
  assert.equal(reflectedInStage(20, first, all) + reflectedInStage(20, second, all), reflectedSteps(20, all));
  // Without leftover noise the stage's last step goes into sigma 0 and does not reflect.
  assert.equal(reflectedInStage(20, stageOf(20, { start_at_step: 0, end_at_step: 10 }), all), 9);
  const c = cost({ ...base, start_at_step: 0, end_at_step: 10, return_with_leftover_noise: "enable" });
  assert.equal(c.stockNfe, 10);
  assert.equal(c.nfe, 10 + 10 * 2);
  assert.equal(c.lines[0], "NFE 30 = 3.00x stock (steps 0..10 of 20)");
  assert.equal(cost({ ...base, start_at_step: 10, end_at_step: 10000 }).nfe, 10);
  assert.equal(cost({ ...base, start_at_step: 0, equal_budget: true }).warning, "equal_budget: W2SD KSampler only, refused");
});

test("window in sigma: the steps depend on the schedule, so the cost is a range, exact only for 0..1", () => {
  const sigma = { ...base, window: "sigma", inversion: "warm_start", inversion_iters: 0 };
  assert.deepEqual(sigmaWindowRange(19, { start_percent: 0, end_percent: 1 }), { low: 19, high: 19 });
  assert.deepEqual(sigmaWindowRange(19, { start_percent: 0, end_percent: 0.5 }), { low: 0, high: 19 });
  assert.deepEqual(sigmaWindowRange(19, { start_percent: 0.4, end_percent: 0.4 }), { low: 0, high: 1 });
  assert.deepEqual(sigmaWindowRange(19, { start_percent: 1, end_percent: 1 }), { low: 0, high: 0 });
  // 0..1 (end 1 = sigma 0) is every step but the last for any schedule: window = percent 0..1's figure.
  const every = cost({ ...sigma, start_percent: 0, end_percent: 1 });
  assert.equal(every.text, cost({ ...sigma, window: "percent", start_percent: 0, end_percent: 1 }).text);
  assert.equal(every.lines[0], "NFE 58 = 2.90x stock (20 steps)");
  const half = cost({ ...sigma, start_percent: 0, end_percent: 0.5 });
  assert.equal(half.nfeMin, 20);
  assert.equal(half.nfe, 58);
  assert.equal(half.lines[0], "NFE 20..58 = 1.00..2.90x stock (20 steps)");
  assert.equal(half.lines[2], "0..19 reflected (depends on the schedule); cfg 5.5");
  assert.equal(reflectedSteps(20, { window: "sigma", start_percent: 0.5, end_percent: 1 }), 19);
  const adaptive = cost({ ...sigma, start_percent: 0, end_percent: 0.5, stop_ratio: 0.2 });
  assert.equal(adaptive.lines[2], "0..19 reflected (depends on the schedule, adaptive); cfg 5.5");
  // A stage: at most the stage's steps that can reflect (the last one goes into sigma 0 here).
  const second = stageOf(20, { start_at_step: 10, end_at_step: 10000 });
  assert.equal(reflectedInStage(20, second, { window: "sigma", start_percent: 0, end_percent: 0.5 }), 9);
  const stage = cost({ ...sigma, start_percent: 0, end_percent: 0.5, start_at_step: 10, end_at_step: 10000 });
  assert.equal(stage.lines[0], "NFE 10..28 = 1.00..2.80x stock (steps 10..20 of 20)");
  assert.equal(cost({ ...sigma, start_at_step: 10, end_at_step: 10000, start_percent: 0, end_percent: 1 }).nfe, 28);
  // equal_budget overrides the window: exact again.
  assert.equal(cost({ ...sigma, equal_budget: true }).lines[0], "NFE 20 = 1.00x stock (10 of 20 steps)");
  assert.match(cost({ ...sigma, start_percent: 0.6, end_percent: 0.5 }).warning, /start_percent > end_percent/);
  const { steps, ...guider } = sigma;
  assert.match(cost({ ...guider, start_percent: 0.6, end_percent: 0.5 }).warning, /start_percent > end_percent/);
});
