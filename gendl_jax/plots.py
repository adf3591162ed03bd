"""Pictures: 2-D scatter plots with the true modes, image grids (as PNG files or as arrays for TensorBoard)."""

from __future__ import annotations

import math
import numbers
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def image_grid_array(images, value_range=(-1.0, 1.0), ncols: int = 8, *, pad: int = 1) -> np.ndarray:
    """Tiles ``images`` (n, h, w, c) into one (H, W, c) float32 picture with values in [0, 1].

    Pixel values are mapped linearly from ``value_range`` to [0, 1]. The grid has
    ``min(ncols, n)`` columns and ``ceil(n / ncols)`` rows, with ``pad`` white pixels between and
    around the tiles: H = rows * (h + pad) + pad, W = cols * (w + pad) + pad. This is a picture for
    display: values outside the range are shown saturated (clipped) and NaN as black (0); the
    input is not modified.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (n, h, w, c) with n >= 1, got shape {images.shape}")
    if not (np.issubdtype(images.dtype, np.number) and not np.issubdtype(images.dtype, np.complexfloating)):
        raise ValueError(f"images must hold real numbers, got dtype {images.dtype}")
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be finite (lo, hi) with hi > lo, got {tuple(value_range)}")
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"pad must be a non-negative int, got {pad!r}")
    n, h, w, c = images.shape
    cols = min(int(ncols), n)
    rows = -(-n // cols)
    scaled = (images.astype(np.float32) - lo) / (hi - lo)
    scaled = np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = scaled[i]
    return grid


def scatter_with_modes(samples, modes, path: str | pathlib.Path, *, title: str = "", ax=None) -> None:
    """Scatter of 2-D ``samples`` (n, 2) with the true ``modes`` (K, 2) marked; saved as PNG at ``path``.

    With ``ax`` given, draws into it and saves nothing (``path`` may be None).
    """
    samples, modes = np.asarray(samples), np.asarray(modes)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4, 4), dpi=120)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color="tab:blue", label="samples")
    if modes is not None and len(modes):
        ax.scatter(modes[:, 0], modes[:, 1], s=25, marker="x", color="tab:red", label="modes")
        span = np.abs(modes).max() * 1.4 + 0.1
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    if own:
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def image_grid(
    images, path: str | pathlib.Path, *, value_range=(-1.0, 1.0), title: str = "", ncols: int | None = None
) -> None:
    """Saves (n, H, W, C) images as a grid PNG, ``ncols`` per row (default: square-ish); pixel values are
    mapped from ``value_range``."""
    images = np.asarray(images)
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise ValueError(f"ncols must be an int >= 1 or None, got {ncols!r}")
    cols = ncols or (max(1, int(np.ceil(np.sqrt(len(images))))) if images.ndim else 1)
    # Values outside the range are shown saturated; the arrays written to .npy are never altered.
    grid = image_grid_array(images, value_range, ncols=cols)
    n, h, w, c = images.shape
    rows = int(np.ceil(n / cols))
    fig, ax = plt.subplots(figsize=(cols * w / 24 + 0.5, rows * h / 24 + 0.5), dpi=100)
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
