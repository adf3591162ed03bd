"""gendl_jax: the lecture "Going further with Deep Learning" as pure, jitted JAX functions."""

__version__ = "0.1.0"
