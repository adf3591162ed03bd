"""gendl finetune: the shipped MNIST LeNet as backbone, fine-tuned on sklearn digits with frozen convolutions."""

import json

import jax
import numpy as np
import pytest

from gendl_jax.cli import main
from gendl_jax.finetune import read_state_dict, to_state_dict
from gendl_jax.finetune.command import digits_as_mnist
from gendl_jax.metrics.classifier import ASSET_DIR, mnist_classifier


def test_finetune_command_freezes_and_loads_the_backbone(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    main(["finetune", "--backbone", str(ASSET_DIR), "--data", "digits", "--head", "10", "--freeze", "conv1", "conv2",
          "--steps", "30", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(capsys.readouterr().out)
    assert summary["frozen"] == ["conv1", "conv2"] and summary["steps"] == 30
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        tuned = ckptr.restore((out / "checkpoint").absolute())["params"]
    shipped = mnist_classifier().params["params"]
    for name in ("conv1", "conv2"):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(tuned[name][leaf], shipped[name][leaf])
    assert not np.array_equal(tuned["dense1"]["kernel"], shipped["dense1"]["kernel"])


def test_finetune_command_from_npz_and_bad_input(tmp_path, capsys):
    variables = jax.tree_util.tree_map(np.asarray, mnist_classifier().params)
    path = tmp_path / "lenet.npz"
    np.savez(path, **to_state_dict(variables))
    assert set(read_state_dict(path)) >= {"conv1.weight", "dense1.weight", "classifier.bias"}
    with pytest.raises(SystemExit):
        main(["finetune", "--backbone", str(path), "--freeze", "conv9", "--steps", "1", "--out", str(tmp_path / "a")])
    assert "valid top-level names" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # LeNet-5 widths vs the 32/64/128 checkpoint
        main(["finetune", "--backbone", str(path), "--model", "lenet", "--steps", "1", "--out", str(tmp_path / "c")])
    assert "wrong shapes" in capsys.readouterr().err


def test_digits_as_mnist_geometry():
    images = np.zeros((1, 8, 8, 1), np.uint8)
    images[0, :, :, 0] = 16
    x = digits_as_mnist(images, 16)
    assert x.shape == (1, 28, 28, 1)
    np.testing.assert_allclose(x[0, 4:24, 4:24, 0], 1.0, atol=1e-6)
    assert np.all(x[0, :4] == -1.0) and np.all(x[0, 24:] == -1.0)
