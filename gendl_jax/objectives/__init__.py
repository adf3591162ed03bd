"""Objectives of the lecture, one module each, exporting its config, ``init(key, config, example_batch)
-> state`` and a pure ``step(state, batch) -> (state, metrics)``, and ending with its declaration
``OBJECTIVE`` (:class:`~gendl_jax.objectives.base.Objective`: what generic code may rely on).

``OBJECTIVES`` maps the CLI names to those declarations. Adding an objective is one module plus one
line below.

Example::

    import jax
    from gendl_jax.data import BatchIterator, load_dataset
    from gendl_jax.objectives import wgan_gp

    data = BatchIterator(load_dataset("grid25"), batch_size=256, seed=0, inner_steps=5)
    state = wgan_gp.init(jax.random.PRNGKey(0), wgan_gp.WGANGPConfig(), data.batch_at(0))
    state, metrics = jax.jit(wgan_gp.step)(state, data.batch_at(0))
"""

from __future__ import annotations

from gendl_jax.objectives import (
    acgan,
    adversarial,
    autoencoders,
    contractive_ae,
    denoising_ae,
    gan,
    iwae,
    minibatch_ot,
    sparse_ae,
    vae,
    wgan,
    wgan_gp,
    wgan_sn,
)
from gendl_jax.objectives.base import Objective

OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        gan.OBJECTIVE,
        wgan.OBJECTIVE,
        wgan_gp.OBJECTIVE,
        wgan_sn.OBJECTIVE,
        minibatch_ot.OBJECTIVE,
        acgan.OBJECTIVE,
        autoencoders.OBJECTIVE,
        sparse_ae.OBJECTIVE,
        denoising_ae.OBJECTIVE,
        contractive_ae.OBJECTIVE,
        vae.OBJECTIVE,
        iwae.OBJECTIVE,
    )
}


def get_objective(name: str) -> Objective:
    """The declaration registered as ``name``; a ``ValueError`` lists the known names."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None


__all__ = [
    "OBJECTIVES",
    "Objective",
    "acgan",
    "adversarial",
    "autoencoders",
    "contractive_ae",
    "denoising_ae",
    "gan",
    "get_objective",
    "iwae",
    "minibatch_ot",
    "sparse_ae",
    "vae",
    "wgan",
    "wgan_gp",
    "wgan_sn",
]
