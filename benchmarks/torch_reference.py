"""PyTorch eager versions of the benchmarked train steps (reference only; torch is never a runtime
dependency of gendl_jax). Same layer sizes, losses, optimisers and number of inner updates as the
jax configs they are handed; data are random tensors of the right shape (data loading is not timed
on either side).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def _mlp_pair(config, dim=2):
    z_dim = config.latent_dim or 2
    layers, width = [], z_dim
    for h in config.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    gen = nn.Sequential(*layers, nn.Linear(width, dim))
    act = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01)}[config.d_activation]
    layers, width = [], dim
    for h in config.hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    disc = nn.Sequential(*layers, nn.Linear(width, 1), nn.Flatten(0))
    return gen, disc, z_dim


def _dcgan_pair(config, batch_norm_in_d):
    z_dim = config.latent_dim or 100
    f = config.base_features
    gen = nn.Sequential(
        nn.Linear(z_dim, 7 * 7 * 2 * f, bias=False),
        nn.Unflatten(1, (2 * f, 7, 7)),
        nn.BatchNorm2d(2 * f, momentum=0.1),
        nn.ReLU(),
        nn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False),
        nn.BatchNorm2d(f, momentum=0.1),
        nn.ReLU(),
        nn.ConvTranspose2d(f, 1, 4, 2, 1),
        nn.Tanh(),
    )
    disc = nn.Sequential(
        nn.Conv2d(1, f, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(f, 2 * f, 4, 2, 1, bias=not batch_norm_in_d),
        *([nn.BatchNorm2d(2 * f, momentum=0.1)] if batch_norm_in_d else []),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 2 * f, 1),
        nn.Flatten(0),
    )
    return gen, disc, z_dim


class CompileUnsupported(RuntimeError):
    """torch.compile cannot run this step (the reason is the message)."""


def make_step(label: str, model: str, batch: int, config, *, compiled: bool = False, device: str = "cpu"):
    """A closure running one train step of ``label`` ('gan' | 'wgan' | 'wgan-gp' | 'wgan-sn') in PyTorch eager, or
    with ``compiled=True`` with both networks and both optimiser steps wrapped in ``torch.compile`` (the recipe of
    the PyTorch tutorials; the autograd calls stay in Python). WGAN-GP raises :class:`CompileUnsupported`: its
    penalty differentiates the critic's input gradient, and torch.compile's AOTAutograd does not support double
    backward (PyTorch 2.13: "torch.compile with aot_autograd does not currently support double backward")."""
    if compiled and label == "wgan-gp":
        raise CompileUnsupported("torch.compile with aot_autograd does not currently support double backward")
    if model == "mlp":
        gen, disc, z_dim = _mlp_pair(config)
        data_shape = (2,)
    else:
        gen, disc, z_dim = _dcgan_pair(config, batch_norm_in_d=label == "gan")
        data_shape = (1, 28, 28)
    if label == "wgan-sn":  # torch's own spectral norm: one power iteration per training-mode forward pass
        spectral_norm = torch.nn.utils.parametrizations.spectral_norm
        disc = nn.Sequential(*[spectral_norm(m) if isinstance(m, (nn.Linear, nn.Conv2d)) else m for m in disc])
    gen, disc = gen.to(device), disc.to(device)
    if config.optimizer == "adam":
        g_opt = torch.optim.Adam(gen.parameters(), config.g_learning_rate, betas=(config.beta1, config.beta2))
        d_opt = torch.optim.Adam(disc.parameters(), config.d_learning_rate, betas=(config.beta1, config.beta2))
    else:
        g_opt = torch.optim.RMSprop(gen.parameters(), config.g_learning_rate)
        d_opt = torch.optim.RMSprop(disc.parameters(), config.d_learning_rate)
    k = config.inner_steps
    real = torch.randn(k, batch, *data_shape, device=device)
    softplus = nn.functional.softplus
    g_update, d_update = g_opt.step, d_opt.step
    if compiled:
        # Every optimiser's step is one code object to dynamo, which falls back to eager after 8 recompilations in
        # a process: each compiled step starts from a reset.
        torch._dynamo.reset()
        gen, disc = torch.compile(gen), torch.compile(disc)
        g_update, d_update = torch.compile(g_opt.step), torch.compile(d_opt.step)

    def step():
        for i in range(k):
            z = torch.randn(batch, z_dim, device=device)
            with torch.no_grad():
                fake = gen(z)
            d_opt.zero_grad(set_to_none=True)
            s_real, s_fake = disc(real[i]), disc(fake)
            if label == "gan":
                loss = softplus(-s_real).mean() + softplus(s_fake).mean()
            else:
                loss = s_fake.mean() - s_real.mean()
            if label == "wgan-gp":
                eps = torch.rand(batch, *([1] * len(data_shape)), device=device)
                x_hat = (eps * real[i] + (1 - eps) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
                loss = loss + config.gp_weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss.backward()
            d_update()
            if label == "wgan":
                with torch.no_grad():
                    for p in disc.parameters():
                        p.clamp_(-config.clip, config.clip)
        g_opt.zero_grad(set_to_none=True)
        s_fake = disc(gen(torch.randn(batch, z_dim, device=device)))
        g_loss = softplus(-s_fake).mean() if label == "gan" else -s_fake.mean()
        g_loss.backward()
        g_update()
        return g_loss.detach()

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(
    label: str, model: str, batch: int, config, repeats: int, *, compiled: bool = False, device: str = "cpu"
) -> dict:
    """Median and min of ``repeats`` steps after 3 warm-up steps; ``compile_s``: the first step's time (for
    ``compiled``, what torch.compile spends tracing and compiling, plus one step)."""
    step = make_step(label, model, batch, config, compiled=compiled, device=device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    first_s = time.perf_counter() - t0
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "compile_s": first_s}
