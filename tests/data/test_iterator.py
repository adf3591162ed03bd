import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.data import ArrayDataset, BatchIterator, ToyDataset, load_dataset, ring8


def _tiny(n=103, shape=(3, 2, 1), max_value=255, seed=0):
    """Random images; labels = example index, so batches reveal which examples they hold."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, max_value + 1, size=(n, *shape), dtype=np.uint8)
    return ArrayDataset("tiny", images, np.arange(n), max_value)


def _equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


def test_shapes_and_dtypes():
    it = BatchIterator(_tiny(), 10, inner_steps=2)
    b = it.batch_at(0)
    assert b["x"].shape == (2, 10, 3, 2, 1) and b["x"].dtype == np.float32
    assert b["y"].shape == (2, 10) and b["y"].dtype == np.int32
    assert it.steps_per_epoch == 103 // 20 == 5
    assert it.example_shape == (3, 2, 1)
    toy = BatchIterator(ToyDataset("ring8", ring8()), 8, inner_steps=3, process_index=1, process_count=2)
    tb = toy.batch_at(4)
    assert set(tb) == {"x"} and tb["x"].shape == (3, 4, 2) and tb["x"].dtype == np.float32
    assert toy.steps_per_epoch is None and toy.example_shape == (2,)
    nolabel = ArrayDataset("n", _tiny().images, None, 255)
    assert set(BatchIterator(nolabel, 4).batch_at(0)) == {"x"}


@pytest.mark.parametrize("kind", ["array", "toy"])
def test_pure_function_of_seed_and_step(kind):
    ds = _tiny() if kind == "array" else ToyDataset("ring8", ring8())
    a = BatchIterator(ds, 10, seed=3, inner_steps=2)
    b = BatchIterator(ds, 10, seed=3, inner_steps=2)
    ref = {s: b.batch_at(s) for s in (0, 7, 13)}
    # Any call order, repeated calls, a fresh iterator: same arrays.
    for s in (13, 0, 7, 13, 0, 2, 7):
        if s in ref:
            _equal(a.batch_at(s), ref[s])
    _equal(a.batch_at(7), BatchIterator(ds, 10, seed=3, inner_steps=2).batch_at(7))
    # A different seed gives different batches.
    c = BatchIterator(ds, 10, seed=4, inner_steps=2)
    assert not np.array_equal(c.batch_at(7)["x"], ref[7]["x"])


@pytest.mark.parametrize("kind", ["array", "toy"])
def test_resume_equals_continuous(kind):
    ds = _tiny() if kind == "array" else ToyDataset("grid25", load_dataset("grid25").distribution)
    it = BatchIterator(ds, 10, seed=1, inner_steps=2)
    full = list(itertools.islice(iter(it), 17))
    resumed = list(itertools.islice(BatchIterator(ds, 10, seed=1, inner_steps=2).iterate(6), 11))
    for x, y in zip(full[6:], resumed):
        _equal(x, y)


def test_toy_matches_documented_generator():
    dist = ring8()
    it = BatchIterator(ToyDataset("ring8", dist), 6, seed=5, inner_steps=3, value_range=(0.0, 1.0))
    expected = dist.sample(np.random.default_rng([5, 9]), 18).reshape(3, 6, 2)
    np.testing.assert_array_equal(it.batch_at(9)["x"], expected)  # value_range ignored


def test_each_example_once_per_epoch():
    ds = _tiny(n=100)
    it = BatchIterator(ds, 10, seed=2, inner_steps=2)
    assert it.steps_per_epoch == 5
    epochs = []
    for e in range(3):
        ys = np.concatenate([it.batch_at(s)["y"].ravel() for s in range(5 * e, 5 * e + 5)])
        np.testing.assert_array_equal(np.sort(ys), np.arange(100))
        epochs.append(ys)
    assert not np.array_equal(epochs[0], epochs[1])
    # Documented order: epoch e follows default_rng([seed, e]).permutation(N).
    np.testing.assert_array_equal(epochs[1], np.random.default_rng([2, 1]).permutation(100))
    # With a remainder, each epoch uses 100 distinct examples of 103 and drops 3.
    it = BatchIterator(_tiny(n=103), 10, seed=2, inner_steps=2)
    ys = np.concatenate([it.batch_at(s)["y"].ravel() for s in range(5)])
    assert len(np.unique(ys)) == 100


def test_mnist_epoch_uses_every_example_once(mnist_dir):
    ds = load_dataset("mnist", "train", data_dir=mnist_dir)
    it = BatchIterator(ds, 100, seed=0, inner_steps=2)
    assert it.steps_per_epoch == 300 and it.example_shape == (28, 28, 1)
    idx = np.concatenate([it.indices_at(s).ravel() for s in range(300)])
    np.testing.assert_array_equal(np.sort(idx), np.arange(60000))
    b = it.batch_at(299)
    np.testing.assert_array_equal(b["y"], ds.labels[it.indices_at(299)])
    np.testing.assert_array_equal(b["x"], (ds.images[it.indices_at(299)] / 127.5 - 1).astype(np.float32))
    ys = np.concatenate([it.batch_at(s)["y"].ravel() for s in range(300)])
    assert np.bincount(ys).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.mark.parametrize("kind", ["array", "toy"])
@pytest.mark.parametrize("count", [2, 4])
def test_process_blocks_concatenate_to_global_batch(kind, count):
    ds = _tiny() if kind == "array" else ToyDataset("ring8", ring8())
    glob = BatchIterator(ds, 12, seed=9, inner_steps=3)
    for step in (0, 3, 11):
        full = glob.batch_at(step)
        parts = [
            BatchIterator(ds, 12, seed=9, inner_steps=3, process_index=p, process_count=count).batch_at(step)
            for p in range(count)
        ]
        for k in full:
            assert parts[0][k].shape[1] == 12 // count
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts], axis=1), full[k])


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0), (-0.5, 3.25)])
@pytest.mark.parametrize("max_value", [255, 16])
def test_value_range_scaling_exact(value_range, max_value):
    ds = _tiny(max_value=max_value)
    it = BatchIterator(ds, 10, seed=0, inner_steps=2, value_range=value_range)
    lo, hi = value_range
    for step in (0, 4, 5):
        b = it.batch_at(step)
        raw = ds.images[b["y"]].astype(np.float64)  # labels are example indices
        np.testing.assert_array_equal(b["x"], (lo + (hi - lo) * raw / max_value).astype(np.float32))
    x = np.concatenate([it.batch_at(s)["x"].ravel() for s in range(5)])
    assert x.min() >= lo and x.max() <= hi


def test_bad_inputs():
    ds = _tiny()
    with pytest.raises(TypeError, match="dataset"):
        BatchIterator(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BatchIterator(ds, 0)
    with pytest.raises(TypeError, match="batch_size"):
        BatchIterator(ds, 2.0)
    with pytest.raises(ValueError, match="divisible by process_count=4"):
        BatchIterator(ds, 10, process_count=4)
    with pytest.raises(ValueError, match="process_index"):
        BatchIterator(ds, 10, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="process_index"):
        BatchIterator(ds, 10, process_index=-1, process_count=2)
    with pytest.raises(ValueError, match="inner_steps"):
        BatchIterator(ds, 10, inner_steps=0)
    with pytest.raises(ValueError, match="seed"):
        BatchIterator(ds, 10, seed=-1)
    with pytest.raises(ValueError, match="value_range"):
        BatchIterator(ds, 10, value_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="value_range"):
        BatchIterator(ds, 10, value_range=(0.0, float("nan")))
    with pytest.raises(TypeError, match="value_range"):
        BatchIterator(ds, 10, value_range=(0.0,))
    with pytest.raises(ValueError, match=r"N=103.*batch_size=52.*inner_steps=2"):
        BatchIterator(ds, 52, inner_steps=2)
    it = BatchIterator(ds, 10)
    with pytest.raises(ValueError, match="step"):
        it.batch_at(-1)
    with pytest.raises(TypeError, match="step"):
        it.batch_at(1.5)
    with pytest.raises(ValueError, match="start_step"):
        next(it.iterate(-3))


def test_map_in_batches_equals_one_call_and_checks_batch_size():
    from gendl_jax.data import map_in_batches

    x = np.random.default_rng(11).normal(size=(1003, 3, 2)).astype(np.float32)
    fn = jax.jit(lambda b: jnp.tanh(b).sum(axis=(1, 2)) * 2.0)
    np.testing.assert_allclose(
        map_in_batches(fn, x, 250), np.tanh(x.astype(np.float64)).sum(axis=(1, 2)) * 2.0, rtol=1e-5, atol=1e-6
    )
    assert map_in_batches(fn, x, 250).shape == (1003,)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        map_in_batches(fn, x, 0)
    with pytest.raises(ValueError, match="at least one row"):
        map_in_batches(fn, x[:0], 10)
