"""A non-finite guard around any pure step: flags (and optionally skips) updates whose metrics
(losses, gradient norms) are NaN or infinite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Step = Callable[[Any, dict], tuple[Any, dict]]

FINITE = "finite"
"""Name of the flag the guarded step adds to its metrics (a bool scalar)."""


def all_finite(metrics: dict) -> jax.Array:
    """True when every value of every metric is finite (a bool scalar)."""
    flags = [jnp.all(jnp.isfinite(jnp.asarray(v))) for v in jax.tree_util.tree_leaves(metrics)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def guard_nonfinite(step: Step, *, skip: bool = False) -> Step:
    """``step`` with a ``"finite"`` flag added to its metrics.

    With ``skip=True`` an update whose metrics are not all finite is dropped: the returned state
    is the input state except its ``step`` counter and PRNG ``key`` (when it has them), which
    advance so that the next step draws fresh latents and noise instead of repeating the bad draw.
    The metrics of a skipped step are returned as computed, so the caller can log them.
    """

    def guarded(state, batch):
        new_state, metrics = step(state, batch)
        finite = all_finite(metrics)
        if skip:
            kept = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), new_state, state)
            advance = {name: getattr(new_state, name) for name in ("step", "key") if hasattr(new_state, name)}
            new_state = kept.replace(**advance) if advance and hasattr(kept, "replace") else kept
        return new_state, {**metrics, FINITE: finite}

    return guarded
