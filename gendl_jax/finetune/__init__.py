"""Fine-tuning tools: head surgery, freezing masks (optax), discriminative learning rates, linear
probe vs full fine-tuning, orbax backbone loading (also from a ``gendl finetune`` run folder),
torchvision-style state-dict import from ``.npz`` / ``.safetensors`` / ``.pth`` (``torch.save``, read without torch) (no torch needed), and
fine-tuning as an objective of the fit loop (``FINETUNE``, what ``gendl finetune`` trains)."""

from gendl_jax.finetune.backbone import load_backbone, run_variables, save_backbone
from gendl_jax.finetune.config import FinetuneConfig
from gendl_jax.finetune.objective import FINETUNE
from gendl_jax.finetune.state_dict import (
    StateDictMismatch,
    from_state_dict,
    load_state_dict,
    read_safetensors,
    read_state_dict,
    to_state_dict,
    torch_keys,
    write_safetensors,
)
from gendl_jax.finetune.step import FinetuneState, accuracy, init_finetune, make_step, predict
from gendl_jax.finetune.surgery import (
    MODES,
    finetune_optimizer,
    freeze_batch_norm,
    frozen_for_mode,
    label_tree,
    merge_backbone,
    replace_head,
    subtree_names,
)

__all__ = [
    "FINETUNE",
    "MODES",
    "FinetuneConfig",
    "FinetuneState",
    "StateDictMismatch",
    "accuracy",
    "finetune_optimizer",
    "freeze_batch_norm",
    "from_state_dict",
    "frozen_for_mode",
    "init_finetune",
    "label_tree",
    "load_backbone",
    "load_state_dict",
    "make_step",
    "merge_backbone",
    "predict",
    "read_safetensors",
    "read_state_dict",
    "replace_head",
    "run_variables",
    "save_backbone",
    "subtree_names",
    "to_state_dict",
    "torch_keys",
    "write_safetensors",
]
