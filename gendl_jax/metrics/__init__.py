"""Measures of generative models; see each module."""

from gendl_jax.metrics.mode_coverage import mode_coverage, mode_histogram

__all__ = ["mode_coverage", "mode_histogram"]
