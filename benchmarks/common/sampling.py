"""A guider sampled through the nodes the way users wire one: SamplerCustomAdvanced with the noise
(RandomNoise) and sigmas (BasicScheduler) KSampler makes for the same seed, sampler, scheduler and steps,
so guider rows stay paired by seed with KSampler rows."""

from __future__ import annotations

from typing import Any


def custom_sample(
    c: Any, model: Any, guider: Any, seed: int, sampler_name: str, scheduler: str, steps: int, latent: Any
) -> Any:
    """The LATENT SamplerCustomAdvanced returns for `guider` (its sigmas from `model`)."""
    noise = c.execute("RandomNoise", noise_seed=seed)[0]
    sampler = c.execute("KSamplerSelect", sampler_name=sampler_name)[0]
    sigmas = c.execute("BasicScheduler", model=model, scheduler=scheduler, steps=steps, denoise=1.0)[0]
    return c.execute(
        "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
        latent_image=latent,
    )[0]  # fmt: skip
