"""sample_with_reflection around toy Euler, Euler ancestral and DPM++ 2M samplers (no ComfyUI)."""

import copy
from typing import Any

import pytest
import torch
from gmm import GMM, karras_sigmas, one_d
from samplers import SAMPLERS, sample_dpmpp_2m, sample_euler, sample_no_lone_step

from w2sd_core import (
    ReflectionDiagnostics,
    ReflectionWindow,
    first_order_step,
    planned_nfe,
    sample_w2sd,
    sample_with_reflection,
)

STRONG, WEAK = one_d(0.3), one_d(0.05)
SIGMAS = karras_sigmas(12, sigma_max=20.0)
STEPS = len(SIGMAS) - 1
WINDOWS = [
    ReflectionWindow.steps(4),
    ReflectionWindow.percent(0.25, 0.6),
    ReflectionWindow.sigma_range(5.0, 0.5),
]


def noise(
    shape: tuple[int, ...] = (16, 1), dtype: torch.dtype = torch.float64, seed: int = 0
) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * SIGMAS[0].item()


class InnerModel:
    """Stands in for ComfyUI's CFGDenoiser chain: samplers read `model.inner_model...` attributes."""

    model_sampling = "EPS"


class MainModel:
    """A main model with the ComfyUI calling convention `model(x, sigma, **extra_args)`."""

    def __init__(self, gmm: GMM) -> None:
        self.gmm = gmm
        self.inner_model = InnerModel()
        self.seen_args: list[dict[str, Any]] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        self.seen_args.append(extra_args)
        return self.gmm(x, sigma)


def run(
    sampler: str = "euler",
    window: ReflectionWindow | None = None,
    x: torch.Tensor | None = None,
    **kwargs: Any,
):  # type: ignore[no-untyped-def]
    x = noise() if x is None else x
    kwargs.setdefault("extra_args", {"seed": 7})
    return sample_with_reflection(
        SAMPLERS[sampler], kwargs.pop("model", MainModel(STRONG)), x, SIGMAS.to(x.dtype),
        strong=STRONG, weak=WEAK, window=window or ReflectionWindow.steps(4), **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("empty", [ReflectionWindow.steps(0), ReflectionWindow.percent(0.3, 0.3)])
def test_empty_window_is_bit_identical_to_a_direct_call(sampler: str, empty: ReflectionWindow) -> None:
    x = noise()
    direct = SAMPLERS[sampler](MainModel(STRONG), x, SIGMAS, {"seed": 7}, None, None)
    calls: list[torch.Tensor] = []

    def spy(model, x, sigmas, extra_args, callback, disable, **options):  # type: ignore[no-untyped-def]
        calls.append(sigmas)
        return SAMPLERS[sampler](model, x, sigmas, extra_args, callback, disable, **options)

    wrapped = sample_with_reflection(
        spy, MainModel(STRONG), x, SIGMAS, {"seed": 7}, strong=STRONG, weak=WEAK, window=empty
    )
    assert torch.equal(wrapped, direct)
    assert len(calls) == 1 and calls[0] is SIGMAS


def test_wrapped_euler_is_sample_w2sd_bit_for_bit() -> None:
    x = noise()
    for n in (0, 3, STEPS - 1):
        expected = sample_w2sd(x, SIGMAS, STRONG, WEAK, reflect_steps=n, inversion_iters=1)
        actual = run(window=ReflectionWindow.steps(n), x=x, inversion_iters=1)
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: w.describe())
def test_inner_calls_cover_the_schedule_one_step_at_a_time_inside_the_window(
    sampler: str, window: ReflectionWindow
) -> None:
    calls: list[tuple[list[float], Any, bool | None]] = []

    def spy(model, x, sigmas, extra_args, callback, disable, **options):  # type: ignore[no-untyped-def]
        calls.append((sigmas.tolist(), extra_args.get("seed"), disable))
        assert callback is None
        return SAMPLERS[sampler](model, x, sigmas, extra_args, callback, disable, **options)

    sample_with_reflection(
        spy, MainModel(STRONG), noise(), SIGMAS, {"seed": 7}, strong=STRONG, weak=WEAK, window=window
    )
    mask = window.mask(SIGMAS)
    values = SIGMAS.tolist()
    first_steps = [values.index(sig[0]) for sig, _, _ in calls]
    # Consecutive calls chain end to start and together cover every step exactly once.
    assert calls[0][0][0] == values[0] and calls[-1][0][-1] == values[-1]
    assert all(a[0][-1] == b[0][0] for a, b in zip(calls, calls[1:], strict=False))
    for (sig, seed, disable), first in zip(calls, first_steps, strict=True):
        assert seed == 7 + first  # the seed offset rule
        if mask[first]:
            assert len(sig) == 2 and disable is True
        else:
            assert not any(mask[first : first + len(sig) - 1])
    assert sum(len(sig) - 1 for sig, _, _ in calls) == STEPS


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("mode", ["w2sd", "s2wd", "resample", "resample_aligned"])
@pytest.mark.parametrize("inversion_iters", [0, 2])
def test_callback_once_per_model_evaluation(sampler: str, mode: str, inversion_iters: int) -> None:
    events: list[dict[str, Any]] = []
    window = ReflectionWindow.steps(5)
    run(sampler, window, callback=events.append, mode=mode, inversion_iters=inversion_iters)
    assert [e["i"] for e in events] == list(range(len(events)))
    roles = [e["role"] for e in events]
    assert roles.count("main") == STEPS  # all three toy samplers evaluate once per step
    assert len(events) == planned_nfe(STEPS, 5, inversion_iters, mode)
    # The role names the model evaluated: in S2WD the weak model steps down and the strong one inverts.
    down, up = ("weak", "strong") if mode == "s2wd" else ("strong", "weak")
    assert roles.count(down) == 5
    assert roles.count(up) == (0 if mode == "resample" else 5 * (1 + inversion_iters))
    for e in events:
        assert set(e) == {"i", "x", "denoised", "sigma", "sigma_hat", "role"}
        assert e["sigma"].shape == (16,) and e["denoised"].shape == e["x"].shape


def test_s2wd_is_w2sd_with_the_roles_swapped() -> None:
    x = noise()
    swapped = sample_with_reflection(
        sample_euler, MainModel(STRONG), x, SIGMAS, strong=WEAK, weak=STRONG, window=ReflectionWindow.steps(6)
    )
    assert torch.equal(run(x=x, window=ReflectionWindow.steps(6), mode="s2wd"), swapped)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("mode", ["w2sd", "resample", "resample_aligned"])
def test_same_seed_same_result_other_seed_other_result(sampler: str, mode: str) -> None:
    a = run(sampler, mode=mode, extra_args={"seed": 3})
    b = run(sampler, mode=mode, extra_args={"seed": 3})
    assert torch.equal(a, b)
    if sampler == "euler_ancestral" or mode.startswith("resample"):
        assert not torch.equal(a, run(sampler, mode=mode, extra_args={"seed": 4}))


def test_seed_argument_overrides_extra_args_seed() -> None:
    model = MainModel(STRONG)
    run("euler_ancestral", model=model, seed=100, extra_args={"seed": 3})
    assert {args["seed"] for args in model.seen_args} <= set(range(100, 100 + STEPS))


def test_ancestral_noise_differs_per_step() -> None:
    # Each one-step call re-seeds ComfyUI's default noise sampler; the offset keeps the draws apart.
    x = torch.zeros(4, 1, dtype=torch.float64)
    draws = []

    def record(model, x, sigmas, extra_args, callback, disable):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(extra_args["seed"])
        draws.append(torch.randn(x.shape, generator=g, dtype=x.dtype))
        return x

    sample_with_reflection(record, MainModel(STRONG), x + 1, SIGMAS, {"seed": 0}, strong=STRONG, weak=WEAK,
                           window=ReflectionWindow.steps(4))  # fmt: skip
    assert len(draws) == 5 and all(not torch.equal(a, b) for a, b in zip(draws, draws[1:], strict=False))


def test_extra_args_are_never_mutated() -> None:
    extra_args = {"seed": 5, "model_options": {"transformer_options": {"a": 1}}}
    before = copy.deepcopy(extra_args)
    model = MainModel(STRONG)
    run("euler_ancestral", model=model, extra_args=extra_args, window=ReflectionWindow.steps(6))
    assert extra_args == before
    assert all(args["model_options"] == before["model_options"] for args in model.seen_args)


def test_no_seed_anywhere_leaves_extra_args_without_one() -> None:
    model = MainModel(STRONG)
    run(model=model, extra_args={})
    assert all("seed" not in args for args in model.seen_args)


def test_counting_model_forwards_attribute_access() -> None:
    def reads_inner_model(model, x, sigmas, extra_args, callback, disable):  # type: ignore[no-untyped-def]
        assert model.inner_model.model_sampling == "EPS"
        assert model.gmm is STRONG
        return SAMPLERS["euler"](model, x, sigmas, extra_args, callback, disable)

    sample_with_reflection(reads_inner_model, MainModel(STRONG), noise(), SIGMAS, strong=STRONG, weak=WEAK,
                           window=ReflectionWindow.steps(2))  # fmt: skip
    with pytest.raises(AttributeError):

        def missing(model, x, sigmas, extra_args, callback, disable):  # type: ignore[no-untyped-def]
            return model.no_such_attribute

        sample_with_reflection(missing, MainModel(STRONG), noise(), SIGMAS, strong=STRONG, weak=WEAK,
                               window=ReflectionWindow.steps(0))  # fmt: skip


def test_options_reach_the_inner_sampler() -> None:
    a = run("euler_ancestral", eta=0.0, window=ReflectionWindow.steps(0))
    b = run("euler", window=ReflectionWindow.steps(0))
    # eta = 0 makes Euler ancestral the Euler sampler (up to the rounding of its sigma_down).
    assert torch.allclose(a, b, atol=1e-9) and not torch.allclose(a, run("euler_ancestral"))


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 4, 3, 8, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_image_and_video_latents_in_low_precision(
    shape: tuple[int, ...], dtype: torch.dtype, sampler: str
) -> None:
    sigmas = karras_sigmas(8, sigma_max=80.0).to(torch.float32)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 80.0).to(dtype)
    diagnostics = ReflectionDiagnostics()
    for mode in ("w2sd", "resample_aligned"):
        out = sample_with_reflection(
            SAMPLERS[sampler], MainModel(STRONG), x, sigmas, {"seed": 1}, strong=STRONG, weak=WEAK,
            window=ReflectionWindow.percent(0, 1), mode=mode, inversion_iters=1, diagnostics=diagnostics,
        )  # fmt: skip
        assert out.shape == x.shape and out.dtype == dtype
        assert torch.isfinite(out).all()
    values = diagnostics.sizes() + diagnostics.cosines()[1:]
    assert len(diagnostics) == 14 and all(torch.isfinite(torch.tensor(values)))


def test_diagnostics_for_each_mode() -> None:
    for mode in ("w2sd", "s2wd", "resample", "resample_aligned"):
        diagnostics = ReflectionDiagnostics()
        run(mode=mode, window=ReflectionWindow.percent(0.25, 0.6), diagnostics=diagnostics)
        assert diagnostics.steps == [
            i for i, m in enumerate(ReflectionWindow.percent(0.25, 0.6).mask(SIGMAS)) if m
        ]
        assert all(s > 0 for s in diagnostics.sizes())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "zigzag"}, r"mode='zigzag' is not one of w2sd, s2wd, resample, resample_aligned"),
        ({"inversion": "exact"}, r"inversion='exact' is not one of explicit, reference"),
        ({"window": ReflectionWindow.steps(STEPS)}, r"reflection steps=12 .*allowed: 0\.\.11"),
    ],
)
def test_invalid_settings_raise_before_sampling(kwargs: dict, message: str) -> None:
    model = MainModel(STRONG)
    with pytest.raises(ValueError, match=message):
        run(model=model, **kwargs)
    assert model.seen_args == []


# --- samplers that cannot take a lone step (ComfyUI's UniPC): `single_step` ---------------------------

EVERY_STEP_BUT_THE_LAST = ReflectionWindow.percent(0.0, 1.0)


def test_first_order_step_is_one_euler_step() -> None:
    x, model = noise(), MainModel(STRONG)
    for i in (0, 5, STEPS - 1):  # the last one steps into sigma 0: the denoised sample
        sigmas = SIGMAS[i : i + 2]
        assert torch.equal(first_order_step(model, x, sigmas, {"seed": 1}), sample_euler(model, x, sigmas))
    assert torch.equal(first_order_step(model, x, SIGMAS[-2:]), STRONG(x, SIGMAS[-2] * x.new_ones(16)))
    with pytest.raises(ValueError, match="one-step schedule.*got 3"):
        first_order_step(model, x, SIGMAS[:3])


@pytest.mark.parametrize("window", [*WINDOWS, EVERY_STEP_BUT_THE_LAST], ids=lambda w: w.describe())
def test_single_step_takes_every_one_step_call_and_only_those(window: ReflectionWindow) -> None:
    inner: list[list[float]] = []
    single: list[tuple[list[float], Any]] = []

    def spy(model, x, sigmas, extra_args, callback, disable, **options):  # type: ignore[no-untyped-def]
        inner.append(sigmas.tolist())
        return sample_dpmpp_2m(model, x, sigmas, extra_args, callback, disable)

    def single_step(model, x, sigmas, extra_args):  # type: ignore[no-untyped-def]
        single.append((sigmas.tolist(), extra_args.get("seed")))
        return first_order_step(model, x, sigmas, extra_args)

    sample_with_reflection(spy, MainModel(STRONG), noise(), SIGMAS, {"seed": 7}, strong=STRONG, weak=WEAK,
                           window=window, single_step=single_step)  # fmt: skip
    values, mask = SIGMAS.tolist(), window.mask(SIGMAS)
    # Expected: each window step alone; each run outside the window whole, a run of one step included.
    runs: list[tuple[int, int]] = []
    for i, reflected in enumerate(mask):
        if reflected or not runs or mask[runs[-1][0]]:
            runs.append((i, i + 1))
        else:
            runs[-1] = (runs[-1][0], i + 1)
    assert [sig for sig, _ in single] == [values[a : b + 1] for a, b in runs if b - a == 1]
    assert [seed for _, seed in single] == [7 + a for a, b in runs if b - a == 1]
    assert inner == [values[a : b + 1] for a, b in runs if b - a > 1]
    if window is EVERY_STEP_BUT_THE_LAST:
        assert inner == [] and len(single) == STEPS  # the last step is a lone run outside the window


def test_single_step_is_never_used_with_an_empty_window() -> None:
    def single_step(*args: Any) -> torch.Tensor:
        raise AssertionError("single_step called with an empty window")

    x = noise()
    direct = sample_no_lone_step(MainModel(STRONG), x, SIGMAS, {"seed": 7})
    wrapped = sample_with_reflection(sample_no_lone_step, MainModel(STRONG), x, SIGMAS, {"seed": 7}, strong=STRONG,
                                     weak=WEAK, window=ReflectionWindow.steps(0), single_step=single_step)  # fmt: skip
    assert torch.equal(wrapped, direct)


def test_a_sampler_without_a_lone_step_gives_back_stock_with_first_order_single_steps() -> None:
    """strong == weak with a converged inversion is the plain sampler: only the cut into steps is left.

    Without `single_step` a sampler that takes no lone step returns the noisy latent (issue 14, UniPC).
    With `first_order_step` every step here is a one-step call (the window covers every step but the
    last), so the result is plain Euler's. Measured (12 Karras steps, 1-D mixture, 10 fixed-point
    iterations): 0.77 relative difference to stock without, 3.7e-4 to plain Euler with it, and 0.071 to
    stock, which is exactly plain Euler's own distance to this second-order sampler."""
    x = noise()
    stock = sample_no_lone_step(MainModel(STRONG), x, SIGMAS, {"seed": 7})
    euler = sample_euler(MainModel(STRONG), x, SIGMAS)

    def w2sd(**kwargs: Any) -> torch.Tensor:
        return sample_with_reflection(sample_no_lone_step, MainModel(STRONG), x, SIGMAS, {"seed": 7}, strong=STRONG,
                                      weak=STRONG, window=EVERY_STEP_BUT_THE_LAST, inversion_iters=10, **kwargs)  # fmt: skip

    def rel(a: torch.Tensor, b: torch.Tensor = stock) -> float:
        return ((a - b).norm() / b.norm()).item()

    broken, fixed = w2sd(), w2sd(single_step=first_order_step)
    assert rel(broken) > 0.5, "the toy sampler no longer reproduces UniPC's missing lone step"
    assert rel(fixed, euler) < 1e-3
    assert rel(fixed) < 1.1 * rel(euler)


@pytest.mark.parametrize("reuse_strong", [False, True])
def test_warm_start_with_strong_equal_weak_is_plain_euler(reuse_strong: bool) -> None:
    """The warm-started inversion undoes a strong step of the same model exactly, with no refinement:
    strong == weak over every step gives back plain Euler, also when the next step reuses the strong
    evaluation (at T + lambda evaluations)."""
    x = noise()
    plain = sample_euler(MainModel(STRONG), x, SIGMAS)
    roles: list[str] = []
    out = sample_with_reflection(sample_euler, MainModel(STRONG), x, SIGMAS, {"seed": 7}, lambda d: roles.append(d["role"]),
                                 strong=STRONG, weak=STRONG, window=EVERY_STEP_BUT_THE_LAST, inversion="warm_start",
                                 reuse_strong=reuse_strong)  # fmt: skip
    assert (out - plain).abs().max() < 1e-10
    assert len(roles) == planned_nfe(STEPS, STEPS - 1, reuse_strong=reuse_strong)


def _dpmpp_2m_reflected_by_hand(
    x: torch.Tensor, window: ReflectionWindow, strong: GMM, weak: GMM
) -> torch.Tensor:
    """DPM++ 2M with its history kept, each window step's latent reflected (explicit inversion) just before
    the step's evaluation: what keep_history must compute, written out."""
    from w2sd_core import reflect

    mask = window.mask(SIGMAS)
    old = None
    for i in range(STEPS):
        s, s_next = SIGMAS[i], SIGMAS[i + 1]
        if mask[i]:
            x = reflect(x, s, s_next, strong, weak)
        denoised = strong(x, s)
        t, t_next = -s.log(), -s_next.log() if s_next > 0 else None
        if old is None or s_next == 0:
            x = denoised if s_next == 0 else (s_next / s) * x - (-(t_next - t)).expm1() * denoised
        else:
            h, h_last = t_next - t, t - (-SIGMAS[i - 1].log())
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (s_next / s) * x - (-h).expm1() * d
        old = denoised
    return x


@pytest.mark.parametrize("window", WINDOWS)
def test_keep_history_reflects_inside_one_dpmpp_2m_run(window: ReflectionWindow) -> None:
    """keep_history: one DPM++ 2M run over the whole schedule, each window step's latent reflected at the
    sampler's own evaluation; its second-order history carries through the window (cut into one-step
    calls, every reflected step would be a first-order step)."""
    x = noise()
    calls: list[int] = []
    kept = run("dpmpp_2m", window, x, keep_history=True, callback=lambda d: calls.append(d["i"]))
    assert torch.allclose(kept, _dpmpp_2m_reflected_by_hand(x, window, STRONG, WEAK), rtol=0, atol=1e-9)
    assert not torch.allclose(kept, run("dpmpp_2m", window, x), rtol=0, atol=1e-6)  # the cut run restarts
    assert len(calls) == planned_nfe(STEPS, window.count(SIGMAS))
    assert torch.equal(x, noise()), "the caller's latent was changed in place"


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_keep_history_with_strong_equal_weak_is_the_plain_sampler(sampler: str) -> None:
    """warm_start undoes a strong step of the same model exactly, and the history is kept: strong == weak
    over every step gives back the plain sampler, multistep ones included."""
    x = noise()
    plain = SAMPLERS[sampler](MainModel(STRONG), x, SIGMAS)
    out = sample_with_reflection(SAMPLERS[sampler], MainModel(STRONG), x, SIGMAS, {"seed": 7}, strong=STRONG,
                                 weak=STRONG, window=EVERY_STEP_BUT_THE_LAST, inversion="warm_start",
                                 keep_history=True)  # fmt: skip
    assert (out - plain).abs().max() < 1e-10
    restarted = sample_with_reflection(SAMPLERS[sampler], MainModel(STRONG), x, SIGMAS, {"seed": 7}, strong=STRONG,
                                       weak=STRONG, window=EVERY_STEP_BUT_THE_LAST, inversion="warm_start")  # fmt: skip
    if sampler == "dpmpp_2m":  # without keep_history its history restarts every step: Euler steps
        assert (restarted - plain).abs().max() > 1e-3


def test_keep_history_equals_the_cut_run_for_euler_with_every_option() -> None:
    """For Euler (no history) both ways of running are the same computation; reuse_strong, refinements and
    the diagnostics behave the same in both."""
    x = noise()
    for extra in ({}, {"reuse_strong": True}, {"inversion_iters": 2}):
        d_cut, d_loop = ReflectionDiagnostics(), ReflectionDiagnostics()
        cut = run("euler", WINDOWS[1], x, diagnostics=d_cut, **extra)
        loop = run("euler", WINDOWS[1], x, diagnostics=d_loop, keep_history=True, **extra)
        assert torch.allclose(cut, loop, rtol=0, atol=1e-12), extra
        assert d_cut.steps == d_loop.steps and len(d_cut) > 0
