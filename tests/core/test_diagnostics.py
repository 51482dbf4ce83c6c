"""Reflection diagnostics: size |x~ - x| / |x| and the cosine between successive directions."""

import math

import pytest
import torch

from w2sd_core import ReflectionDiagnostics, direction_cosine, reflection_size


def test_size_and_cosine_per_batch_element_then_batch_mean() -> None:
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    x_tilde = x + torch.tensor([[0.5, 0.0], [0.0, 0.1]])
    assert reflection_size(x, x_tilde).item() == pytest.approx((0.5 / 5 + 0.1 / 1) / 2)
    assert direction_cosine(
        torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    ).tolist() == (pytest.approx([0.0, 1.0]))


def test_record_keeps_tensors_and_reads_them_back_once() -> None:
    diagnostics = ReflectionDiagnostics()
    x = torch.ones(2, 4, 8, 8)
    diagnostics.record(0, 10.0, x, x * 1.1)
    diagnostics.record(1, 5.0, x, x * 1.2)
    diagnostics.record(3, 2.0, x, x * 0.9)
    assert all(isinstance(v, torch.Tensor) for v in diagnostics._sizes + diagnostics._cosines)
    assert diagnostics.sizes() == pytest.approx([0.1, 0.2, 0.1])
    cosines = diagnostics.cosines()
    assert math.isnan(cosines[0]) and cosines[1:] == pytest.approx([1.0, -1.0])
    as_dict = diagnostics.as_dict()
    assert as_dict["steps"] == [0, 1, 3] and as_dict["sigmas"] == [10.0, 5.0, 2.0]
    assert len(diagnostics) == 3


def test_empty_diagnostics() -> None:
    assert ReflectionDiagnostics().sizes() == [] and ReflectionDiagnostics().cosines() == []


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_latents_at_high_sigma_do_not_overflow(dtype: torch.dtype) -> None:
    # fp16 squares overflow above ~256; norms are taken in float32.
    x = (torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 80).to(dtype)
    diagnostics = ReflectionDiagnostics()
    diagnostics.record(0, 80.0, x, x * 1.01)
    diagnostics.record(1, 70.0, x, x * 1.02)
    assert all(math.isfinite(v) for v in diagnostics.sizes() + diagnostics.cosines()[1:])
    assert diagnostics.sizes()[0] == pytest.approx(0.01, rel=0.05)


def test_zero_latent_and_zero_direction_stay_finite() -> None:
    diagnostics = ReflectionDiagnostics()
    z = torch.zeros(2, 3)
    diagnostics.record(0, 1.0, z, z)
    diagnostics.record(1, 0.5, z, z)
    assert diagnostics.sizes() == [0.0, 0.0] and diagnostics.cosines()[1] == 0.0
