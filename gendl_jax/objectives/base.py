"""What an objective declares about itself, so that generic code (the fit loop, sweeps, the CLI, the
samplers and ``gendl eval``) never guesses.

An objective is two pure functions, ``init(key, config, example_batch) -> state`` and
``step(state, batch) -> (state, metrics)``, and a typed config. :class:`Objective` bundles them with
the answers to the questions generic code asks:

* is a model of this config class-conditional, with how many classes (:meth:`Objective.num_classes`);
* is its discriminator's output a calibrated log density ratio ``log p_data / p_g``, so that
  discriminator rejection sampling and discriminator-driven latent sampling may use it
  (:meth:`Objective.density_ratio_discriminator`): true of a GAN's cross-entropy discriminator, false
  of a hinge discriminator (a score) and of a WGAN critic (a potential);
* how it samples (``sample``; ``latent_sampling`` when samples are ``G(z)`` of a Gaussian latent, so
  that truncation applies) and what it reports at the end of a run (``report``);
* where its hyper-parameters live in the state (``hparams`` / ``with_hparams``; what ``--seeds`` sweeps
  and checkpoints carry);
* its data: the value range images are scaled to, an optional preparation of the training set, the
  run settings it defaults to, and different defaults for the 2-D toy mixtures (:meth:`Objective.defaults`).

Each objective module ends with its declaration, ``OBJECTIVE = Objective(...)``; the registry
:data:`gendl_jax.objectives.OBJECTIVES` lists them. Adding an objective is one module plus one registry line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

from gendl_jax.data import DEFAULT_DATA, TOY_DISTRIBUTIONS

Family = Literal["adversarial", "generator", "autoencoder", "vae", "classifier"]


def _no_classes(config: Any) -> int:
    del config
    return 0


def _never(config: Any) -> bool:
    del config
    return False


@dataclasses.dataclass(frozen=True)
class Objective:
    """The declaration of one objective: its functions and what generic code may rely on.

    Attributes:
      name: the CLI name (``gendl train NAME``) and the key in the registry.
      family: ``"adversarial"`` (a generator and a discriminator / critic; the state is an
        :class:`~gendl_jax.objectives.adversarial.AdversarialState`), ``"generator"`` (a generator trained alone
        on a distance between minibatches, no discriminator: ``minibatch-ot``), ``"autoencoder"``, ``"vae"`` or
        ``"classifier"`` (fine-tuning).
      config_cls: the typed, frozen config dataclass; ``config_cls()`` gives the paper's defaults and
        ``config.validate()`` raises ``ValueError`` naming a bad field.
      init: ``init(key, config, example_batch) -> state``; ``example_batch["x"]`` has shape
        ``(config.inner_steps, m, *data_shape)``.
      step: ``step(state, batch, *, axis_name=None) -> (state, metrics)``, pure and jittable.
      sample: ``sample(state, key, n) -> (n, *data_shape)`` (a class-conditional model also takes
        ``labels=``); None for models without a prior (autoencoders, classifiers).
      value_range: the range images are scaled to for training, and the range of image samples.
      train_defaults: defaults of :class:`gendl_jax.train.TrainConfig` fields (e.g. the dataset).
      toy_config_defaults / toy_train_defaults: config and train-setting defaults that replace those
        above on the 2-D toy mixtures (what ``gendl train NAME --data grid25`` starts from).
      prepare_dataset: ``prepare_dataset(dataset, config) -> dataset`` applied to the training data.
      report: ``report(state, run_dir, train_config, dataset) -> dict`` merged into summary.json.
      num_classes_of: ``config -> C``: the number of classes of a class-conditional model, 0 otherwise.
      density_ratio_of: ``config -> bool``: whether the discriminator's logit estimates
        ``log p_data(x) / p_g(x)`` (what DRS and DDLS assume).
      latent_sampling: samples are ``G(z)`` with ``z ~ N(0, I)`` (truncation applies).
      hparams: ``state -> {name: array}``: hyper-parameters kept as state leaves (None: none).
      with_hparams: ``(state, **values) -> state`` replacing some of them, checked.
    """

    name: str
    family: Family
    config_cls: type
    init: Callable[..., Any]
    step: Callable[..., Any]
    sample: Callable[..., Any] | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    toy_config_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    toy_train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    prepare_dataset: Callable[..., Any] | None = None
    report: Callable[..., dict] | None = None
    num_classes_of: Callable[[Any], int] = _no_classes
    density_ratio_of: Callable[[Any], bool] = _never
    latent_sampling: bool = False
    hparams: Callable[[Any], Mapping[str, Any]] | None = None
    with_hparams: Callable[..., Any] | None = None

    def __post_init__(self):
        if self.family not in ("adversarial", "generator", "autoencoder", "vae", "classifier"):
            raise ValueError(
                f"family must be adversarial, generator, autoencoder, vae or classifier, got {self.family!r}"
            )
        if (self.hparams is None) != (self.with_hparams is None):
            raise ValueError(f"objective {self.name!r}: hparams and with_hparams are declared together")
        for field in ("toy_config_defaults", "train_defaults", "toy_train_defaults"):
            object.__setattr__(self, field, dict(getattr(self, field)))
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = set(self.toy_config_defaults) - names
        if unknown:
            raise ValueError(
                f"objective {self.name!r}: toy_config_defaults {sorted(unknown)} are not fields of "
                f"{self.config_cls.__name__}"
            )

    # -- questions generic code asks ------------------------------------------------------------

    def num_classes(self, config: Any) -> int:
        """Classes of a class-conditional model of ``config``; 0 for an unconditional one."""
        return int(self.num_classes_of(config))

    def conditional(self, config: Any) -> bool:
        return self.num_classes(config) > 0

    def density_ratio_discriminator(self, config: Any) -> bool:
        """Whether the discriminator's logit is a (calibratable) log density ratio, as DRS and DDLS assume."""
        return bool(self.density_ratio_of(config))

    def samplers(self, config: Any) -> tuple[str, ...]:
        """The ways ``gendl sample`` may draw from a model of ``config``: a subset of
        ``("plain", "truncation", "drs", "ddls")``."""
        if self.sample is None:
            return ()
        out = ["plain"]
        if self.latent_sampling:
            out.append("truncation")
        if self.density_ratio_discriminator(config):
            out.append("drs")
            if not self.conditional(config):
                out.append("ddls")
        return tuple(out)

    def defaults(self, data: str | None = None, steps: int | None = None) -> tuple[Any, dict]:
        """``(config, train_settings)``: the objective's default config and TrainConfig fields for ``data``
        (None: the objective's default dataset); the 2-D toy mixtures get the toy defaults on top.

        Toy defaults that decay the learning rates over the run (``lr_decay_steps`` equal to their ``steps``)
        keep doing so for another budget: with ``steps`` given, ``lr_decay_steps`` follows it.
        """
        train = dict(self.train_defaults)
        if data is not None:
            train["data"] = data
        config_values: dict = {}
        if train.get("data", DEFAULT_DATA) in TOY_DISTRIBUTIONS:
            config_values.update(self.toy_config_defaults)
            train.update(self.toy_train_defaults)
            tied = "lr_decay_steps" in config_values and config_values["lr_decay_steps"] == train.get("steps")
            if steps is not None and tied:
                config_values["lr_decay_steps"] = steps
        if steps is not None:
            train["steps"] = steps
        return self.config_cls(**config_values), train
