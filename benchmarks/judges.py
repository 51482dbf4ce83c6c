"""Judges for the learned benchmark: real 8x8 digits, a classifier trained on them, sample metrics.

Data: scikit-learn's handwritten digits (1,797 images of 8x8 pixels, values 0..16, 10 classes), scaled
to [0, 1] and split once by a fixed permutation into a train split (what the models and the classifier
learn from) and a held-out split (what samples are compared with). Everything here is torch/numpy only:
no ComfyUI. Metrics take a batch of 8x8 grayscale digits in [0, 1] (numpy or torch, shape (N, 8, 8)).

    from judges import load_digits, class_shares, prompt_accuracy, frechet_distance, image_to_digit
    digits = image_to_digit(decoded)           # ComfyUI IMAGE (B, 64, 64, 3) -> (B, 8, 8)
    class_shares(digits)[0]                    # share of samples the classifier calls "0"
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

HELD_OUT = 500
"""Images in the held-out split (the rest, 1,297, are the train split)."""
SPLIT_SEED = 0
CLASSIFIER_SEED = 0
HIDDEN = 64
"""Width of the classifier's hidden layer: its activations are the features of the Frechet distance."""


@dataclass(frozen=True)
class Digits:
    train_x: np.ndarray  # (N, 8, 8) float32 in [0, 1]
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray  # held-out split
    test_y: np.ndarray


@functools.lru_cache(maxsize=1)
def load_digits() -> Digits:
    """scikit-learn's digits in [0, 1], split by a fixed permutation (seed 0): 1,297 train, 500 held out."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(y))
    train, test = order[HELD_OUT:], order[:HELD_OUT]
    return Digits(x[train], y[train], x[test], y[test])


def _as_tensor(digits: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(digits, dtype=np.float32) if not torch.is_tensor(digits) else digits)
    x = x.detach().float().cpu()
    if x.ndim != 3 or x.shape[1:] != (8, 8):
        raise ValueError(f"digits: shape {tuple(x.shape)}, expected (N, 8, 8)")
    return x.reshape(len(x), 64)


class Classifier(torch.nn.Module):
    """MLP 64 -> 64 (ReLU) -> 10; `features` is the hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(64, HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


@functools.lru_cache(maxsize=1)
def classifier() -> Classifier:
    """The digit classifier, trained on the train split (full-batch Adam, fixed seed, ~1 s; cached)."""
    digits = load_digits()
    x = torch.from_numpy(digits.train_x.reshape(-1, 64))
    y = torch.from_numpy(digits.train_y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers may be under no_grad
            torch.manual_seed(CLASSIFIER_SEED)
            model = Classifier()
            opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
            for _ in range(300):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval().requires_grad_(False)


def predict(digits: Any) -> np.ndarray:
    """Class the classifier gives each digit, (N,) int64."""
    return classifier()(_as_tensor(digits)).argmax(1).numpy()


def class_shares(digits: Any) -> np.ndarray:
    """Share of the batch the classifier puts in each class, (10,), sums to 1."""
    return np.bincount(predict(digits), minlength=10) / len(predict(digits))


def prompt_accuracy(digits: Any, labels: Any) -> float:
    """Share of samples the classifier calls the class their prompt asked for."""
    labels = np.asarray(labels).reshape(-1)
    pred = predict(digits)
    if len(labels) != len(pred):
        raise ValueError(f"labels: {len(labels)} for {len(pred)} digits")
    return float((pred == labels).mean())


def features(digits: Any) -> np.ndarray:
    """The classifier's hidden activations, (N, 64) float64."""
    return classifier().features(_as_tensor(digits)).double().numpy()


def _frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    # Tr(sqrt(C1 C2)) via the symmetric form sqrt(C1)^(1/2) C2 sqrt(C1)^(1/2): real eigenvalues.
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    return float(
        ((mu1 - mu2) ** 2).sum()
        + np.trace(cov1)
        + np.trace(cov2)
        - 2 * np.sqrt(np.clip(cross, 0, None)).sum()
    )


@functools.lru_cache(maxsize=1)
def _held_out_stats() -> tuple[np.ndarray, np.ndarray]:
    f = features(load_digits().test_x)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(digits: Any, reference: Any = None) -> float:
    """Frechet distance between the classifier features of `digits` and of `reference` (default: held out)."""
    if reference is None:
        return frechet_from_features(features(digits))
    g = features(reference)
    return frechet_from_features(features(digits), (g.mean(0), np.cov(g, rowvar=False)))


def frechet_from_features(f: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """`frechet_distance` from features already computed (`features(digits)`): resampling reuses them."""
    if len(f) < 2:
        raise ValueError(f"digits: {len(f)} samples, the Frechet distance needs at least 2")
    mu2, cov2 = _held_out_stats() if reference is None else reference
    return _frechet(f.mean(0), np.cov(f, rowvar=False), mu2, cov2)


def nearest_neighbour_distance(digits: Any) -> float:
    """Mean pixel-space L2 distance from each digit to its nearest held-out real digit (pixels in [0, 1])."""
    x = _as_tensor(digits)
    ref = torch.from_numpy(load_digits().test_x.reshape(-1, 64))
    return float(torch.cdist(x.double(), ref.double()).min(1).values.mean())


def out_of_range_share(pixels: Any, low: float = 0.0, high: float = 1.0, tolerance: float = 0.05) -> float:
    """Share of pixel values outside [low - tolerance, high + tolerance] (use on unclamped decodes)."""
    x = (
        torch.as_tensor(np.asarray(pixels, dtype=np.float32))
        if not torch.is_tensor(pixels)
        else pixels.float()
    )
    return float(((x < low - tolerance) | (x > high + tolerance)).float().mean())


def image_to_digit(image: Any) -> np.ndarray:
    """ComfyUI IMAGE (B, H, W, 3) in [0, 1], H and W multiples of 8 -> (B, 8, 8): mean of each block and channel."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32)) if not torch.is_tensor(image) else image
    x = x.detach().float().cpu()
    if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
        raise ValueError(f"image: shape {tuple(x.shape)}, expected (B, H, W, C) with H and W multiples of 8")
    b, h, w, c = x.shape
    return x.reshape(b, 8, h // 8, 8, w // 8, c).mean(dim=(2, 4, 5)).numpy()


def digit_to_image(digits: Any, size: int = 64) -> np.ndarray:
    """(N, 8, 8) in [0, 1] -> ComfyUI IMAGE (N, size, size, 3): nearest upsampling, gray as RGB."""
    x = _as_tensor(digits).reshape(-1, 8, 8)
    if size % 8:
        raise ValueError(f"size: {size}, expected a multiple of 8")
    k = size // 8
    up = x.repeat_interleave(k, 1).repeat_interleave(k, 2)
    return up[..., None].expand(-1, -1, -1, 3).contiguous().numpy()
