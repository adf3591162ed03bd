"""The FID Inception against pytorch-fid 0.3.0 and torch-fidelity 0.4 (same random, calibrated weights; see
conftest.py): resize, features of every block, FID from folders / arrays / statistics files, IS and KID, the weight
files, and the errors."""

from __future__ import annotations

import pathlib
import warnings

import jax
import numpy as np
import pytest
from conftest import import_torchvision, smooth_images
from PIL import Image

from gendl_jax.metrics import inception_features as inf
from gendl_jax.metrics.inception import inception_score
from gendl_jax.metrics.inception_fid import fid_from_paths, inception_measures, save_source_statistics
from gendl_jax.metrics.kernel import kid
from gendl_jax.metrics.pairwise import prdc
from gendl_jax.models.inception import INCEPTION_OUTPUTS

torch = pytest.importorskip("torch")

BLOCKS = ("64", "192", "768", "2048")


def _max_rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def extractor(inception_weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not the published weights
        return inf.load_inception(inception_weights)


@pytest.fixture
def patched_pytorch_fid(inception_weights, monkeypatch):
    """pytorch-fid's modules with its weight download replaced by reading the test weights."""
    import_torchvision()
    from pytorch_fid import fid_score
    from pytorch_fid import inception as pf

    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda url, progress=True: torch.load(inception_weights))
    return fid_score


def _write_folder(folder: pathlib.Path, images: np.ndarray, ext: str = "png") -> pathlib.Path:
    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i:04d}.{ext}")
    return folder


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(("h", "w"), [(28, 28), (32, 32), (64, 48), (299, 299), (300, 301), (517, 420)])
def test_resize_equals_torch_interpolate_and_tf1(h, w):
    import torch.nn.functional as F

    import_torchvision()
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    rng = np.random.default_rng(h * 1000 + w)
    images = rng.integers(0, 256, size=(2, h, w, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    ref = F.interpolate(x / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    ours = np.asarray(inf.preprocess(images, "pytorch-fid"))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-5)
    ref = (interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False) - 128) / 128
    ours = np.asarray(inf.preprocess(images, "torch-fidelity"))
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-5)


def test_resize_weights_rows_are_interpolation_weights():
    for preprocessing in inf.PREPROCESSING:
        for n_in, n_out in ((28, 299), (299, 299), (600, 299), (1, 5)):
            w = inf.resize_weights(n_in, n_out, preprocessing)
            np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
            assert (w >= 0).all() and ((w > 0).sum(axis=1) <= 2).all()
        np.testing.assert_array_equal(inf.resize_weights(299, 299, preprocessing), np.eye(299))


def test_grayscale_reads_as_three_equal_channels():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(3, 20, 20, 1), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(inf.preprocess(gray)), np.asarray(inf.preprocess(np.repeat(gray, 3, -1))))
    np.testing.assert_array_equal(np.asarray(inf.preprocess(gray[..., 0])), np.asarray(inf.preprocess(gray)))


def test_to_uint8_rounds_as_save_image():
    x = np.array([-1.0, -0.999, 0.0, 0.5, 1.0, 1.0005], np.float32)
    expected = np.floor((x.astype(np.float64) + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(inf.to_uint8(x), expected)
    with pytest.raises(ValueError, match="value_range"):
        inf.to_uint8(np.array([1.1], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        inf.to_uint8(np.array([np.nan], np.float32))


# ---------------------------------------------------------------- features


@pytest.mark.parametrize(("h", "w", "c"), [(28, 28, 1), (32, 32, 3), (64, 48, 3), (299, 299, 3)])
def test_features_equal_pytorch_fid(extractor, pytorch_fid_model, h, w, c):
    rng = np.random.default_rng(h + w + c)
    images = smooth_images(rng, 3, h, w, c)
    ours = extractor.features(images, BLOCKS, batch_size=4)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # what pytorch-fid's ToTensor gives
    if c == 1:
        x = x.repeat(1, 3, 1, 1)  # PIL's convert("RGB")
    with torch.no_grad():
        ref = pytorch_fid_model()(x)
    for name, r in zip(BLOCKS, ref):
        r = r.mean(dim=(2, 3)).numpy()  # pytorch-fid's get_activations pools blocks 0-2 the same way
        assert np.abs(r).mean() > 0.1, "the calibrated features must be of order 1"
        assert _max_rel(ours[name], r) < 1e-4, name


@pytest.mark.parametrize(("h", "w"), [(28, 28), (32, 32), (299, 299)])
def test_features_and_logits_equal_torch_fidelity(extractor, torch_fidelity_model, h, w):
    rng = np.random.default_rng(7 * h + w)
    images = smooth_images(rng, 3, h, w, 3)
    ours = extractor.with_preprocessing("torch-fidelity").features(images, INCEPTION_OUTPUTS, batch_size=3)
    with torch.no_grad():
        ref = torch_fidelity_model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    for name, r in zip(INCEPTION_OUTPUTS, ref):
        assert _max_rel(ours[name], r.numpy()) < 1e-4, name


def test_batch_size_and_padding_do_not_change_features(extractor):
    images = smooth_images(np.random.default_rng(3), 5, 32, 32, 3)
    a = extractor.features(images, ("192",), batch_size=5)["192"]
    b = extractor.features(images, ("192",), batch_size=2)["192"]  # batches of 2, 2 and 1 (padded)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- weight files


def test_legacy_npz_and_safetensors_weights_give_the_same_network(extractor, inception_weights, tmp_path):
    from gendl_jax.models.weights import read_state_dict, write_safetensors

    state = torch.load(inception_weights)
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    arrays = {k: v.numpy() for k, v in state.items()}
    np.savez(tmp_path / "w.npz", **arrays)
    write_safetensors(tmp_path / "w.safetensors", arrays)
    assert set(read_state_dict(legacy)) == set(arrays)
    for path in (legacy, tmp_path / "w.npz", tmp_path / "w.safetensors"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            other = inf.load_inception(path)
        for a, b in zip(jax.tree.leaves(other.variables), jax.tree.leaves(extractor.variables)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_random_weights_are_flagged_as_unpublished(inception_weights):
    with pytest.warns(RuntimeWarning, match="not the published FID Inception weights"):
        ex = inf.load_inception(inception_weights)
    assert not ex.published_weights and len(ex.weights_sha256) == 64


def test_missing_weights_name_the_file_and_where_it_is_published(monkeypatch, tmp_path):
    monkeypatch.delenv(inf.WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth") as e:
        inf.load_inception()
    assert inf.WEIGHTS_URL in str(e.value) and "never downloads" in str(e.value)
    monkeypatch.setenv(inf.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="GENDL_INCEPTION_WEIGHTS='.*nope.pth' is not a file"):
        inf.load_inception()


def test_env_variable_names_the_weights(monkeypatch, inception_weights, extractor):
    monkeypatch.setenv(inf.WEIGHTS_ENV, str(inception_weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert inf.load_inception().weights_sha256 == extractor.weights_sha256


def test_a_state_dict_of_another_network_is_refused(tmp_path):
    np.savez(tmp_path / "lenet.npz", **{"conv1.weight": np.zeros((6, 1, 5, 5), np.float32)})
    with pytest.raises(ValueError, match="is not the FID Inception-V3 state dict"):
        inf.load_inception(tmp_path / "lenet.npz")


# ---------------------------------------------------------------- FID, statistics files


@pytest.mark.parametrize("dims", [64, pytest.param(192, marks=pytest.mark.slow)])
def test_fid_equals_pytorch_fid_from_folders_arrays_and_statistics(
    patched_pytorch_fid, inception_weights, tmp_path, dims
):
    rng = np.random.default_rng(dims)
    n = dims + 24  # enough images for full-rank covariances
    a = smooth_images(rng, n, 32, 32, 3)
    b = np.clip(smooth_images(rng, n, 32, 32, 3).astype(np.int64) + 30, 0, 255).astype(np.uint8)
    folder_a, folder_b = _write_folder(tmp_path / "a", a), _write_folder(tmp_path / "b" / "nested", b)
    ref = patched_pytorch_fid.calculate_fid_given_paths([str(folder_a), str(folder_b)], 50, "cpu", dims, 0)
    patched_pytorch_fid.save_fid_stats([str(folder_b), str(tmp_path / "b_stats.npz")], 50, "cpu", dims, 0)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", images=b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # tmp_path / "b" holds the images one folder down: sources are searched recursively
        from_folders = fid_from_paths(folder_a, tmp_path / "b", weights=inception_weights, dims=dims)
        from_arrays = fid_from_paths(tmp_path / "a.npy", tmp_path / "b.npz", weights=inception_weights, dims=dims)
        stats = save_source_statistics(
            tmp_path / "a.npy", tmp_path / "a_stats.npz", weights=inception_weights, dims=dims
        )
    assert ref > 1.0
    assert abs(from_folders - ref) / ref < 1e-4
    assert abs(from_arrays - ref) / ref < 1e-4
    # our statistics file read by pytorch-fid, and pytorch-fid's read by us
    ref_from_stats = patched_pytorch_fid.calculate_fid_given_paths(
        [str(stats), str(tmp_path / "b_stats.npz")], 50, "cpu", dims, 0
    )
    assert abs(ref_from_stats - ref) / ref < 1e-4
    assert abs(fid_from_paths(stats, tmp_path / "b_stats.npz", dims=dims) - ref) / ref < 1e-4
    with pytest.raises(FileExistsError, match="never overwritten"):
        save_source_statistics(tmp_path / "a.npy", stats, weights=inception_weights, dims=dims)


def test_frechet_distance_of_2048_statistics_equals_pytorch_fid(patched_pytorch_fid, tmp_path):
    rng = np.random.default_rng(11)
    d = 2048
    stats = []
    for shift in (0.0, 0.3):
        f = rng.normal(size=(d, d // 2)) / np.sqrt(d)
        sigma = f @ f.T + 0.05 * np.eye(d)
        stats.append((rng.normal(shift, 1.0, d), sigma))
    for i, (mu, sigma) in enumerate(stats):
        inf.save_statistics(tmp_path / f"s{i}.npz", mu, sigma)
    ref = patched_pytorch_fid.calculate_frechet_distance(*stats[0], *stats[1])
    ours = fid_from_paths(tmp_path / "s0.npz", tmp_path / "s1.npz")
    assert abs(ours - ref) / ref < 1e-6


# ---------------------------------------------------------------- IS, KID, precision / recall


def test_is_kid_and_precision_recall_equal_torch_fidelity(extractor, inception_weights, tmp_path):
    import_torchvision()
    import torch_fidelity

    rng = np.random.default_rng(5)
    fake = smooth_images(rng, 40, 32, 32, 3)
    real = np.clip(smooth_images(rng, 40, 32, 32, 3).astype(np.int64) - 25, 0, 255).astype(np.uint8)
    fake_dir, real_dir = _write_folder(tmp_path / "fake", fake), _write_folder(tmp_path / "real", real)
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake_dir),
        input2=str(real_dir),
        cuda=False,
        isc=True,
        kid=True,
        prc=True,
        feature_extractor="inception-v3-compat",  # precision / recall in pool3 too (its default is VGG-16)
        kid_subset_size=30,
        kid_subsets=50,
        feature_extractor_weights_path=str(inception_weights),
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    ex = extractor.with_preprocessing("torch-fidelity")
    f = ex.features(fake, ("2048", "logits_unbiased"), batch_size=20)
    r = ex.features(real, ("2048",), batch_size=20)["2048"]
    is_mean, is_std = inception_score(f["logits_unbiased"], 10, from_logits=True, shuffle_seed=2020)
    kid_mean, kid_std = kid(r, f["2048"], seed=2020, n_subsets=50, subset_size=30)
    assert ref["inception_score_mean"] > 1.5
    assert abs(is_mean - ref["inception_score_mean"]) / ref["inception_score_mean"] < 1e-4
    assert abs(is_std - ref["inception_score_std"]) / ref["inception_score_std"] < 1e-3
    assert abs(kid_mean - ref["kernel_inception_distance_mean"]) / abs(ref["kernel_inception_distance_mean"]) < 1e-4
    assert abs(kid_std - ref["kernel_inception_distance_std"]) / ref["kernel_inception_distance_std"] < 1e-3
    pr = prdc(r, f["2048"], k_precision_recall=3)
    assert pr["precision"] == pytest.approx(ref["precision"], abs=1e-6)
    assert pr["recall"] == pytest.approx(ref["recall"], abs=1e-6)


def test_inception_measures_report_every_score(extractor):
    rng = np.random.default_rng(9)
    fake, real = smooth_images(rng, 24, 32, 32, 3), smooth_images(rng, 24, 32, 32, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 24 samples: singular covariances
        out = inception_measures(extractor, fake, real, batch_size=12)
    assert out["inception_kid_subset_size"] == 24 and out["inception_n_fake"] == 24
    for key in ("inception_fid", "inception_is", "inception_kid", "inception_precision", "inception_coverage"):
        assert np.isfinite(out[key]), key
    assert out["inception_is"] >= 1.0 and out["inception_fid"] > 0


# ---------------------------------------------------------------- bad input


def test_sources_fail_with_one_line_errors(tmp_path, inception_weights):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    np.savez(tmp_path / "nostats.npz", mean=np.zeros(3))
    inf.save_statistics(tmp_path / "s64.npz", np.zeros(64), np.eye(64))
    inf.save_statistics(tmp_path / "s192.npz", np.zeros(192), np.eye(192))
    kw = dict(weights=inception_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="holds no image file"):
            fid_from_paths(tmp_path / "empty", tmp_path / "s64.npz", dims=64, **kw)
        with pytest.raises(ValueError, match="x.png: not a readable image"):
            fid_from_paths(tmp_path / "bad", tmp_path / "s64.npz", dims=64, **kw)
        with pytest.raises(ValueError, match="unexpected keys|no examples"):
            fid_from_paths(tmp_path / "nostats.npz", tmp_path / "s64.npz", dims=64, **kw)
    with pytest.raises(ValueError, match="dimension 192, but dims is 64"):
        fid_from_paths(tmp_path / "s64.npz", tmp_path / "s192.npz", dims=64)
    with pytest.raises(ValueError, match="dims must be one of"):
        fid_from_paths(tmp_path / "s64.npz", tmp_path / "s64.npz", dims=100)
    np.savez(tmp_path / "onlymu.npz", mu=np.zeros(64))
    with pytest.raises(ValueError, match="needs arrays 'mu' and 'sigma'"):
        fid_from_paths(tmp_path / "onlymu.npz", tmp_path / "s64.npz", dims=64)
    with pytest.raises(TypeError, match="uint8"):
        inf.check_uint8_images(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="C 1 or 3"):
        inf.check_uint8_images(np.zeros((1, 8, 8, 4), np.uint8))
