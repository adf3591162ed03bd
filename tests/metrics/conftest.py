"""The FID Inception references: pytorch-fid 0.3.0 and torch-fidelity 0.4 with random, calibrated weights.

No published weights can be downloaded here, so the tests build the FID Inception with pytorch-fid's own classes,
give it random weights whose BatchNorm statistics are calibrated on images (features of order 1, so that
differences are not hidden under tiny numbers), save it with ``torch.save`` and load the same file into
pytorch-fid (through its own ``fid_inception_v3``, whose download is replaced by reading this file), into
torch-fidelity (``feature_extractor_weights_path``) and into gendl_jax.
"""

from __future__ import annotations

import contextlib
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def import_torchvision():
    """torchvision, imported on a CPU-only torch.

    The torchvision wheels the package index serves are CUDA builds; their compiled ops (nms, roi_align, ...) do
    not load beside the CPU torch wheel, and ``import torchvision`` then fails while registering fake kernels for
    them. The Inception classes the references need are plain Python, so those registrations are skipped.
    """
    import sys

    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    original = torch.library.register_fake

    def tolerant(op, func=None, /, **kwargs):
        def register(fn):
            with contextlib.suppress(RuntimeError):  # the op does not exist: its C++ library did not load
                original(op, **kwargs)(fn)
            return fn

        return register if func is None else register(func)

    torch.library.register_fake = tolerant
    try:
        import torchvision
    finally:
        torch.library.register_fake = original
    return torchvision


def smooth_images(rng: np.random.Generator, n: int, h: int, w: int, c: int) -> np.ndarray:
    """uint8 (n, h, w, c) images with structure at several scales (random low-resolution fields, upsampled, plus
    pixel noise), so that the network's features vary between images."""
    out = np.zeros((n, h, w, c))
    for cells in (2, 5, 11):
        field = rng.uniform(0, 1, size=(n, cells, cells, c))
        iy = np.minimum((np.arange(h) * cells) // h, cells - 1)
        ix = np.minimum((np.arange(w) * cells) // w, cells - 1)
        out += field[:, iy][:, :, ix]
    out = out / 3 + rng.normal(0, 0.08, size=out.shape)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def _fid_inception_torch():
    import_torchvision()
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def calibrated_state_dict(seed: int = 0, n_images: int = 12) -> dict:
    """A random FID Inception state dict whose BatchNorm running statistics are the batch statistics of its inputs
    on ``n_images`` smooth images (so eval-mode features are of order 1), with random BatchNorm affine parameters
    and logits of order 10 (so the Inception Score is not stuck near 1)."""
    torch.manual_seed(seed)
    net = _fid_inception_torch()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.4)
                m.bias.normal_(0.0, 0.2)
                m.momentum = None  # cumulative average: one forward pass sets the running statistics
                m.reset_running_stats()
        net.fc.weight.mul_(20.0)
        net.fc.bias.normal_(0.0, 1.0)
        images = smooth_images(rng, n_images, 299, 299, 3)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        net.train()
        net(x)
    net.eval()
    return net.state_dict()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> pathlib.Path:
    """A calibrated random FID Inception state dict saved by ``torch.save`` (zip format)."""
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(calibrated_state_dict(), path)
    return path


@pytest.fixture(scope="session")
def pytorch_fid_model(inception_weights):
    """``() -> pytorch_fid.inception.InceptionV3([0, 1, 2, 3])`` (all four blocks) loaded from ``inception_weights``
    by pytorch-fid's own ``fid_inception_v3`` (its download replaced by ``torch.load`` of the file)."""
    import_torchvision()
    from pytorch_fid import inception as pf

    cache = []

    def build():
        if not cache:
            original = pf.load_state_dict_from_url
            pf.load_state_dict_from_url = lambda url, progress=True: torch.load(inception_weights)
            try:
                cache.append(pf.InceptionV3([0, 1, 2, 3]).eval())
            finally:
                pf.load_state_dict_from_url = original
        return cache[0]

    return build


@pytest.fixture(scope="session")
def torch_fidelity_model(inception_weights):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` reading ``inception_weights``."""
    import_torchvision()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["64", "192", "768", "2048", "logits_unbiased", "logits"],
        feature_extractor_weights_path=str(inception_weights),
    )
