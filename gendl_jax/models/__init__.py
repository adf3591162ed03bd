"""Flax linen modules: MLP, DCGAN and SNGAN ResNet generators, discriminators and critics, and their layers.

Conventions: ``__call__(x, train=True)``; images are NHWC float32; generators map
z (N, latent_dim) -> (N, *sample_shape); discriminators / critics map (N, *sample_shape) -> (N,)
logits or scores; modules with BatchNorm take ``bn_axis_name`` for cross-device batch statistics.
The GAN networks take ``num_classes``: a class-conditional one is called ``(x, train, labels=...)`` with
(N,) int labels (one-hot input of the generator, projection discriminator).
PyTorch weights (:mod:`gendl_jax.models.weights`), without torch: ``read_state_dict`` reads ``.npz``,
``.safetensors`` and ``torch.save`` files (``read_torch``, both formats); ``from_state_dict`` /
``to_state_dict`` map torchvision-named state dicts to and from Flax variables.
"""

from gendl_jax.models.autoencoders import CODE_ACTIVATIONS, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from gendl_jax.models.classic import VGG, AlexNet, vgg16
from gendl_jax.models.dcgan import SUPPORTED_IMAGE_SIZES, DCGANDiscriminator, DCGANGenerator, conv_critic
from gendl_jax.models.layers import (
    DCGAN_INIT,
    Conv,
    ConvTranspose,
    Maxout,
    conv,
    conv_transpose,
    conv_transpose_reference,
    spectral_normalized,
)
from gendl_jax.models.lenet import LENET_INPUT_SHAPE, LeNet
from gendl_jax.models.mlp import ACTIVATIONS, GENERATOR_OUTPUTS, MLPDiscriminator, MLPGenerator
from gendl_jax.models.resnet import (
    CifarResNet,
    ResNet,
    WideResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    wide_resnet50_2,
    wrn_28_10,
)
from gendl_jax.models.sngan import (
    SNGAN_IMAGE_SIZES,
    SNGAN_LATENT_DIM,
    ConditionalBatchNorm,
    SNGANDiscriminator,
    SNGANGenerator,
)
from gendl_jax.models.weights import (
    StateDictMismatch,
    from_state_dict,
    load_state_dict,
    read_safetensors,
    read_state_dict,
    read_torch,
    read_torch_object,
    to_state_dict,
    torch_keys,
    write_safetensors,
)

__all__ = [
    "ACTIVATIONS",
    "CODE_ACTIVATIONS",
    "DCGAN_INIT",
    "GENERATOR_OUTPUTS",
    "LENET_INPUT_SHAPE",
    "SNGAN_IMAGE_SIZES",
    "SNGAN_LATENT_DIM",
    "SUPPORTED_IMAGE_SIZES",
    "VGG",
    "AlexNet",
    "CifarResNet",
    "ConditionalBatchNorm",
    "Conv",
    "ConvDecoder",
    "ConvEncoder",
    "ConvTranspose",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "LeNet",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "Maxout",
    "ResNet",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "StateDictMismatch",
    "WideResNet",
    "conv",
    "conv_critic",
    "conv_transpose",
    "conv_transpose_reference",
    "from_state_dict",
    "load_state_dict",
    "read_safetensors",
    "read_state_dict",
    "read_torch",
    "read_torch_object",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "spectral_normalized",
    "to_state_dict",
    "torch_keys",
    "vgg16",
    "wide_resnet50_2",
    "write_safetensors",
    "wrn_28_10",
]
