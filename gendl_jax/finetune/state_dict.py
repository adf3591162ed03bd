"""PyTorch-style state dicts (torchvision naming) to and from Flax variables, and the files that hold them,
without torch: re-exported from :mod:`gendl_jax.models.weights`, where they are implemented (one implementation,
usable from every layer). Files: ``.npz``, ``.safetensors`` and ``torch.save`` files (``.pth`` / ``.pt`` /
``.bin`` / ``.ckpt``, zip and legacy formats).
"""

from gendl_jax.models.weights import (
    IGNORED_SUFFIXES,
    StateDictMismatch,
    from_state_dict,
    load_state_dict,
    read_safetensors,
    read_state_dict,
    to_state_dict,
    torch_keys,
    write_safetensors,
)

__all__ = [
    "IGNORED_SUFFIXES",
    "StateDictMismatch",
    "from_state_dict",
    "load_state_dict",
    "read_safetensors",
    "read_state_dict",
    "to_state_dict",
    "torch_keys",
    "write_safetensors",
]
