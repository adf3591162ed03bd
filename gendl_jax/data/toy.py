"""Two-dimensional Gaussian mixtures with known modes (the lecture's toy distributions).

Every distribution here is an equal-weight mixture of isotropic Gaussians in the plane, so the
mode-coverage protocol of PacGAN (a point is high quality if within 3 std of its nearest mode)
applies to all of them. Constants follow DESIGN.md, "Reference protocols".
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "TOY_DISTRIBUTIONS",
    "GaussianMixture",
    "grid25",
    "ring8",
    "swissroll",
]


def _check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _check_count(n, name: str = "n", minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    n = int(n)
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Equal-weight mixture of K isotropic Gaussians in 2-D.

    Attributes:
      name: short identifier, e.g. ``"ring8"``.
      modes: (K, 2) float64 array of component means (stored as a read-only copy).
      std: per-coordinate standard deviation shared by all components (> 0).
    """

    name: str
    modes: np.ndarray
    std: float

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        modes = np.array(self.modes, dtype=np.float64, copy=True)
        if modes.ndim != 2 or modes.shape[1] != 2 or modes.shape[0] < 1:
            raise ValueError(f"modes must have shape (K, 2) with K >= 1, got shape {modes.shape}")
        if not np.all(np.isfinite(modes)):
            raise ValueError("modes must be finite")
        modes.flags.writeable = False
        object.__setattr__(self, "modes", modes)
        object.__setattr__(self, "std", _check_positive_float(self.std, "std"))

    @property
    def n_modes(self) -> int:
        """Number of components K."""
        return int(self.modes.shape[0])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws n points with numpy: a uniform component, then Gaussian noise.

        Args:
          rng: a ``np.random.Generator``.
          n: number of samples (>= 1).
        Returns:
          (n, 2) float32 array.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        n = _check_count(n)
        comp = rng.integers(0, self.n_modes, size=n)
        noise = rng.standard_normal((n, 2))
        return (self.modes[comp] + self.std * noise).astype(np.float32)

    def sample_jax(self, key, n: int) -> jax.Array:
        """Draws n points with ``jax.random`` (pure; usable inside ``jit`` with n static).

        Args:
          key: a PRNG key (typed ``jax.random.key`` or raw uint32 ``PRNGKey``).
          n: number of samples (>= 1), a Python int.
        Returns:
          (n, 2) float32 array.
        """
        n = _check_count(n)
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.randint(k_comp, (n,), 0, self.n_modes)
        noise = jax.random.normal(k_noise, (n, 2), dtype=jnp.float32)
        modes = jnp.asarray(self.modes, dtype=jnp.float32)
        return modes[comp] + jnp.float32(self.std) * noise

    def __repr__(self) -> str:
        return f"GaussianMixture(name={self.name!r}, n_modes={self.n_modes}, std={self.std})"


def ring8(radius: float = 1.0, std: float = 0.01) -> GaussianMixture:
    """8 Gaussians on a circle at the 8 distinct angles 2*pi*k/8, k = 0..7.

    Defaults are the PacGAN protocol (radius 1, std 0.01). Modes: (8, 2).
    """
    radius = _check_positive_float(radius, "radius")
    std = _check_positive_float(std, "std")
    angles = 2.0 * np.pi * np.arange(8) / 8.0
    modes = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture("ring8", modes, std)


def grid25(spacing: float = 2.0, std: float = 0.05) -> GaussianMixture:
    """25 Gaussians on a 5x5 grid centred at the origin, {-2,-1,0,1,2}^2 * spacing.

    Defaults give the PacGAN grid {-4,-2,0,2,4}^2 with std 0.05. Modes: (25, 2), ordered with
    the first coordinate varying slowest.
    """
    spacing = _check_positive_float(spacing, "spacing")
    std = _check_positive_float(std, "std")
    axis = spacing * np.arange(-2, 3, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    modes = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return GaussianMixture("grid25", modes, std)


_SWISS_T0 = 1.5 * np.pi
_SWISS_T1 = 4.5 * np.pi
# Dividing by this maps the curve into [-2, 2]^2 exactly: |t cos t|, |t sin t| <= t <= 4.5*pi,
# with equality at the end point t = 4.5*pi, where (x, y) = (0, 4.5*pi).
_SWISS_SCALE = _SWISS_T1 / 2.0


def _spiral_arc_length(t: np.ndarray) -> np.ndarray:
    """Arc length of (t cos t, t sin t) from 0 to t: (t sqrt(1+t^2) + asinh t) / 2."""
    return 0.5 * (t * np.sqrt(1.0 + t * t) + np.arcsinh(t))


def swissroll(n_modes: int = 25, std: float | None = None) -> GaussianMixture:
    """Gaussian mixture whose centres lie on the 2-D Swiss-roll spiral.

    The curve is (x, y) = (t cos t, t sin t) / scale for t in [1.5*pi, 4.5*pi], with
    scale = 4.5*pi / 2 so that the curve fits exactly in [-2, 2]^2 (its farthest point is the
    end point (0, 2)). The n_modes centres are spaced evenly in arc length, end points included
    (t solved from the closed-form arc length by Newton's method to float64 precision).

    Default std: (arc-length spacing between neighbouring centres) / 8, i.e. about 0.066 for 25
    modes (spacing about 0.527). Neighbouring centres are then about 8 std apart along the curve
    and the turns of the spiral about 13 std apart, so the 3-std balls used by mode scoring are
    disjoint (tested: minimum pairwise centre distance > 6 std), while the samples still trace
    a visible roll.

    Args:
      n_modes: number of centres K (>= 2).
      std: per-coordinate std; None for the default above.
    Returns:
      GaussianMixture with modes (K, 2).
    """
    n_modes = _check_count(n_modes, "n_modes", minimum=2)
    s0 = _spiral_arc_length(np.float64(_SWISS_T0))
    s1 = _spiral_arc_length(np.float64(_SWISS_T1))
    targets = np.linspace(s0, s1, n_modes)
    # Initial guess by interpolation on a dense grid, then Newton (ds/dt = sqrt(1 + t^2)).
    grid = np.linspace(_SWISS_T0, _SWISS_T1, 4097)
    t = np.interp(targets, _spiral_arc_length(grid), grid)
    for _ in range(8):
        t = t - (_spiral_arc_length(t) - targets) / np.sqrt(1.0 + t * t)
    t[0], t[-1] = _SWISS_T0, _SWISS_T1
    modes = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / _SWISS_SCALE
    if std is None:
        std = (s1 - s0) / (n_modes - 1) / _SWISS_SCALE / 8.0
    std = _check_positive_float(std, "std")
    return GaussianMixture("swissroll", modes, std)


TOY_DISTRIBUTIONS: dict[str, Callable[..., GaussianMixture]] = {
    "ring8": ring8,
    "grid25": grid25,
    "swissroll": swissroll,
}
