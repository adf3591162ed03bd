"""LeNet-style convolutional classifier for 28x28x1 images (LeCun et al. 1998, LeNet-5 layout).

Two 5x5 convolutions, each followed by ReLU and 2x2 max pooling, then dense hidden layers and a
linear classifier. The first convolution is padded ("SAME") so that a 28x28 input plays the role
of LeNet-5's 32x32 one; the second is unpadded: 28 -> 28 -> 14 -> 10 -> 5, so the flattened
feature map is 5 * 5 * ``channels[1]``. The defaults are LeNet-5's widths (6, 16; 120, 84).

``__call__`` returns ``(logits, features)``: logits (N, num_classes) and the penultimate
activations (N, hidden[-1]) that evaluation metrics (FID, KID, precision/recall) use as features.
"""

from __future__ import annotations

import numbers

import flax.linen as nn
import jax

Array = jax.Array

LENET_INPUT_SHAPE = (28, 28, 1)
"""(H, W, C) the network accepts."""


def check_widths(name: str, widths, length: int | None = None) -> None:
    ok = isinstance(widths, tuple) and all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in widths
    )
    if not ok or (length is not None and len(widths) != length) or not widths:
        want = f"{length} positive ints" if length else "a non-empty tuple of positive ints"
        raise ValueError(f"{name} must be {want}, got {widths!r}")


class LeNet(nn.Module):
    """LeNet-style classifier: (N, 28, 28, 1) float32 -> ((N, num_classes) logits, (N, hidden[-1]) features).

    Attributes:
      num_classes: outputs of the final linear layer.
      channels: output channels of the two 5x5 convolutions.
      hidden: widths of the dense hidden layers (ReLU); the last one's activations are the features.
      precision: ``lax`` precision of every convolution and dense layer (None: the backend's default,
        which on recent NVIDIA GPUs may compute float32 products in TF32).
    """

    num_classes: int = 10
    channels: tuple[int, int] = (6, 16)
    hidden: tuple[int, ...] = (120, 84)
    precision: str | jax.lax.Precision | None = None

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        if (
            not isinstance(self.num_classes, numbers.Integral)
            or isinstance(self.num_classes, bool)
            or self.num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        check_widths("channels", self.channels, 2)
        check_widths("hidden", self.hidden)
        if tuple(x.shape[1:]) != LENET_INPUT_SHAPE or x.ndim != 4:
            raise ValueError(f"x must have shape (N, 28, 28, 1), got {tuple(x.shape)}")
        h = nn.Conv(self.channels[0], (5, 5), padding="SAME", precision=self.precision, name="conv1")(x)
        h = nn.max_pool(nn.relu(h), (2, 2), strides=(2, 2))
        h = nn.Conv(self.channels[1], (5, 5), padding="VALID", precision=self.precision, name="conv2")(h)
        h = nn.max_pool(nn.relu(h), (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, precision=self.precision, name=f"dense{i + 1}")(h))
        logits = nn.Dense(self.num_classes, precision=self.precision, name="classifier")(h)
        return logits, h
