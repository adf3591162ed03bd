"""Contractive autoencoder (``contractive-ae``): ``L(x, g(h(x))) + lambda * ||J_h(x)||_F^2``.

The squared Frobenius norm of the encoder's Jacobian with respect to its input, computed exactly per
example (``jax.jacrev`` when the code is smaller than the input, ``jax.jacfwd`` otherwise, under ``vmap``).
The step is the shared one of :mod:`gendl_jax.objectives.autoencoders`; this module gives its config and penalty.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

from gendl_jax.objectives import autoencoders
from gendl_jax.objectives.distributed import gather_rows

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ContractiveAEConfig(autoencoders.AutoencoderConfig):
    """Contractive autoencoder: reconstruction + ``contractive_weight * ||J_h(x)||_F^2``."""

    code_activation: Literal["linear", "relu", "leaky_relu", "elu", "tanh", "sigmoid"] = "sigmoid"
    contractive_weight: float = 0.1
    penalty_examples: int = 0
    """If > 0, the penalty is averaged over the first this-many examples of each (shuffled) batch
    only: an unbiased estimate of the batch mean at a fraction of the cost (each Jacobian is
    latent_dim backward passes). 0: every example."""

    def validate(self) -> None:
        super().validate()
        if not self.contractive_weight >= 0:
            raise ValueError(f"contractive_weight must be >= 0, got {self.contractive_weight}")
        if self.penalty_examples < 0:
            raise ValueError(f"penalty_examples must be >= 0 (0: all), got {self.penalty_examples}")

    def penalty(self, encode, x: Array, z: Array, axis_name: str | None = None) -> tuple[Array, dict]:
        """``contractive_weight * mean ||J_h(x)||_F^2``, over the first ``penalty_examples`` of the global batch
        (the same rows on every device) when that is > 0."""
        del z
        if self.penalty_examples:
            raw = jnp.mean(jacobian_frobenius_sq(encode, gather_rows(x, axis_name)[: self.penalty_examples]))
        else:
            raw = jnp.mean(jacobian_frobenius_sq(encode, x))
        return self.contractive_weight * raw, {"jacobian_frobenius_sq": raw}


def jacobian_frobenius_sq(fn, x: Array) -> Array:
    """``||d fn(x_i) / d x_i||_F^2`` for each example: fn maps (m, *shape) -> (m, d) row by row; x: (m, *shape) -> (m,).

    Exact: the per-example Jacobian (d, *shape) by reverse mode when d is smaller than the input
    size (d backward passes), by forward mode otherwise, under ``vmap``.
    """
    single = lambda xi: fn(xi[None])[0]
    d = jax.eval_shape(single, x[0]).shape[0]
    jac = jax.jacrev(single) if d < math.prod(x.shape[1:]) else jax.jacfwd(single)
    jacobians = jax.vmap(jac)(x)
    return autoencoders.per_example_sum(jnp.square(jacobians))


def sigmoid_layer_jacobian_frobenius_sq(kernel: Array, bias: Array, x: Array) -> Array:
    """Closed form of :func:`jacobian_frobenius_sq` for ``h(x) = sigmoid(x W + b)``.

    ``||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2``; kernel (D, d), bias (d,), x (m, D) -> (m,).
    """
    h = jax.nn.sigmoid(x @ kernel + bias)
    return jnp.square(h * (1 - h)) @ jnp.sum(jnp.square(kernel), axis=0)


def contraction(state: autoencoders.AutoencoderState, x: Array) -> Array:
    """``||J_h(x_i)||_F`` per example: (n, *data_shape) -> (n,)."""
    return jnp.sqrt(jacobian_frobenius_sq(autoencoders.encoder_fn(state, state.params), x))


init = autoencoders.init
step = autoencoders.step
report = autoencoders.report


OBJECTIVE = autoencoders.declare("contractive-ae", ContractiveAEConfig)
