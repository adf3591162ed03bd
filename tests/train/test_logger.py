"""RunLogger, run_metadata and image_grid_array: files read back independently of the writer."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2

from gendl_jax.plots import image_grid_array
from gendl_jax.train import logger as lg
from gendl_jax.train.logger import RunLogger, run_metadata

REPO = pathlib.Path(__file__).resolve().parents[2]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(folder: pathlib.Path) -> list[event_pb2.Event]:
    """Every Event in the TFRecord files under ``folder`` (sorted by name), CRCs checked."""
    events = []
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            assert length_crc == masked_crc(header)
            body = data[pos + 12 : pos + 12 + length]
            (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            assert body_crc == masked_crc(body)
            events.append(event_pb2.Event.FromString(body))
            pos += 16 + length
    return events


def scalar_series(events) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                series.setdefault(value.tag, []).append((event.step, value.simple_value))
    return series


def images(events) -> dict[str, list[tuple[int, np.ndarray]]]:
    found: dict[str, list[tuple[int, np.ndarray]]] = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("image"):
                pixels = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
                assert pixels.shape[:2] == (value.image.height, value.image.width)
                found.setdefault(value.tag, []).append((event.step, pixels))
    return found


def test_crc32c_reference_vector():
    assert crc32c(b"123456789") == 0xE3069283


def test_scalars_and_image_read_back(tmp_path):
    rng = np.random.default_rng(0)
    losses = rng.normal(size=5)
    rgb = rng.random((6, 7, 3))
    gray = rng.integers(0, 256, size=(4, 5), dtype=np.uint8)
    with RunLogger(tmp_path) as log:
        for i, loss in enumerate(losses):
            log.scalars(10 * i, {"loss": loss, "lr": jnp.float32(0.5 / (i + 1)), "epoch": np.int64(i)})
        log.image(40, "samples", rgb)
        log.image(41, "gray", gray)

    series = scalar_series(read_events(tmp_path / "tensorboard"))
    assert set(series) == {"loss", "lr", "epoch"}
    assert [s for s, _ in series["loss"]] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose([v for _, v in series["loss"]], losses.astype(np.float32), rtol=0)
    np.testing.assert_allclose([v for _, v in series["lr"]], [np.float32(0.5 / (i + 1)) for i in range(5)], rtol=0)
    assert [v for _, v in series["epoch"]] == [0.0, 1.0, 2.0, 3.0, 4.0]

    found = images(read_events(tmp_path / "tensorboard"))
    [(step, pixels)] = found["samples"]
    assert step == 40
    np.testing.assert_array_equal(pixels, np.round(rgb * 255).astype(np.uint8))
    [(step, pixels)] = found["gray"]
    assert step == 41 and pixels.shape == (4, 5, 3)
    np.testing.assert_array_equal(pixels, np.repeat(gray[..., None], 3, axis=-1))

    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 10, 20, 30, 40]
    assert [line["loss"] for line in lines] == [float(v) for v in losses]
    assert all(isinstance(line["epoch"], int) for line in lines)
    assert lines[1]["lr"] == float(np.float32(0.25))


def test_jsonl_is_written_before_close_and_resume_appends(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    log.scalars(1, {"a": 1.5})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "a": 1.5}
    log.close()
    log.close()
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(ValueError, match="closed"):
        log.scalars(2, {"a": 2.0})

    with RunLogger(tmp_path) as log:
        log.scalars(2, {"a": 2.5})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "a": 1.5}, {"step": 2, "a": 2.5}]


def test_resumed_tensorboard_keeps_both_files(tmp_path):
    with RunLogger(tmp_path) as log:
        log.scalars(1, {"a": 1.0})
    with RunLogger(tmp_path) as log:
        log.scalars(2, {"a": 2.0})
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert sorted(scalar_series(read_events(tmp_path / "tensorboard"))["a"]) == [(1, 1.0), (2, 2.0)]


def test_non_finite_values_round_trip(tmp_path):
    with RunLogger(tmp_path) as log:
        log.scalars(3, {"nan": float("nan"), "inf": np.float32(np.inf), "ninf": -math.inf})
    [line] = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert "NaN" in line and "-Infinity" in line
    back = json.loads(line)
    assert math.isnan(back["nan"]) and back["inf"] == math.inf and back["ninf"] == -math.inf
    series = scalar_series(read_events(tmp_path / "tensorboard"))
    assert math.isnan(series["nan"][0][1]) and series["inf"][0][1] == math.inf


def test_disabled_logger_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with RunLogger(out, enabled=False) as log:
        log.scalars(0, {"a": 1.0})
        log.image(0, "x", np.zeros((2, 2)))
        assert log.run_info({"a": 1}) is None
        log.flush()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["1.0", None, [1.0, 2.0], np.zeros(2), jnp.ones((1,)), True, 1 + 2j])
def test_non_numeric_metric_is_rejected(tmp_path, value):
    with RunLogger(tmp_path, tensorboard=False) as log, pytest.raises(ValueError, match=r"metrics\['bad'\]"):
        log.scalars(0, {"ok": 1.0, "bad": value})
    assert (tmp_path / "metrics.jsonl").read_text() == ""


@pytest.mark.parametrize(
    ("step", "metrics", "match"),
    [
        (-1, {"a": 1.0}, "step"),
        (1.5, {"a": 1.0}, "step"),
        (0, {"step": 1.0}, "keys"),
        (0, {3: 1.0}, "keys"),
        (0, [("a", 1.0)], "metrics must be a mapping"),
    ],
)
def test_bad_step_or_names_are_rejected(tmp_path, step, metrics, match):
    with RunLogger(tmp_path, tensorboard=False) as log, pytest.raises(ValueError, match=match):
        log.scalars(step, metrics)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((2, 2, 2, 3)), r"image must have shape"),
        (np.zeros(4), r"image must have shape"),
        (np.zeros((3, 3, 2)), r"image must have shape"),
        (np.full((2, 2, 3), 1.5), r"\[0, 1\]"),
        (np.full((2, 2), np.nan), r"finite"),
        (np.zeros((2, 2), np.int32), r"dtype int32"),
    ],
)
def test_bad_image_is_rejected(tmp_path, image, match):
    with RunLogger(tmp_path) as log:
        with pytest.raises(ValueError, match=match):
            log.image(0, "x", image)
        with pytest.raises(ValueError, match="tag"):
            log.image(0, "", np.zeros((2, 2)))


def test_image_grid_array_layout():
    rng = np.random.default_rng(1)
    batch = rng.uniform(-1, 1, size=(5, 3, 4, 1))
    grid = image_grid_array(batch, (-1.0, 1.0), ncols=2)
    assert grid.shape == (3 * 4 + 1, 2 * 5 + 1, 1) and grid.dtype == np.float32
    for i in range(5):
        r, c = divmod(i, 2)
        tile = grid[1 + 4 * r : 4 + 4 * r, 1 + 5 * c : 5 + 5 * c]
        np.testing.assert_allclose(tile, (batch[i] + 1) / 2, atol=1e-6)
    assert np.all(grid[:, 0] == 1) and np.all(grid[0] == 1)
    assert np.all(grid[9:12, 6:10] == 1)  # the sixth, empty slot stays white
    assert image_grid_array(batch, (-1.0, 1.0), ncols=8).shape == (5, 5 * 5 + 1, 1)


def test_image_grid_array_saturates_and_feeds_image(tmp_path):
    batch = np.array([[[[2.0]], [[-3.0]]], [[[np.nan]], [[0.0]]]])  # (2, 2, 1, 1)
    grid = image_grid_array(batch, (0.0, 1.0), pad=0)
    np.testing.assert_array_equal(grid[:, :, 0], [[1.0, 0.0], [0.0, 0.0]])
    assert math.isnan(batch[1, 0, 0, 0])
    with RunLogger(tmp_path) as log:
        log.image(0, "grid", image_grid_array(np.random.default_rng(2).normal(size=(3, 2, 2, 3)), (-1, 1)))
    [(_, pixels)] = images(read_events(tmp_path / "tensorboard"))["grid"]
    assert pixels.shape == (1 * (2 + 1) + 1, 3 * (2 + 1) + 1, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 2, 2))}, "images must have shape"),
        ({"images": np.zeros((0, 2, 2, 1))}, "images must have shape"),
        ({"value_range": (1.0, 1.0)}, "value_range"),
        ({"ncols": 0}, "ncols"),
    ],
)
def test_image_grid_array_bad_input(kwargs, match):
    args = {"images": np.zeros((2, 2, 2, 1)), "value_range": (0.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=match):
        image_grid_array(**args)


def test_run_metadata_fields():
    meta = run_metadata()
    assert meta["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert set(meta["packages"]) == set(lg.PACKAGES)
    assert meta["packages"]["jax"] == jax.__version__
    assert meta["packages"]["numpy"] == np.__version__
    assert all(v is None or isinstance(v, str) for v in meta["packages"].values())
    assert meta["backend"] == jax.default_backend()
    assert meta["device_kind"] == jax.devices()[0].device_kind and isinstance(meta["device_kind"], str)
    for key in ("device_count", "local_device_count", "process_count", "process_index"):
        assert type(meta[key]) is int
    assert meta["device_count"] == jax.device_count() >= 1
    assert isinstance(meta["hostname"], str) and meta["hostname"]
    assert meta["time_utc"].endswith("+00:00")
    json.dumps(meta, allow_nan=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compute the expected revision")
def test_run_metadata_git_revision_matches_checkout():
    meta = run_metadata()
    in_repo = (
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", "gendl_jax/__init__.py"], cwd=REPO, capture_output=True
        ).returncode
        == 0
    )
    if not in_repo:
        assert meta["git_revision"] is None
        return
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert meta["git_revision"] == head and len(head) == 40
    assert isinstance(meta["git_dirty"], bool)


def test_git_revision_without_git_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    meta = run_metadata()
    assert meta["git_revision"] is None and meta["git_dirty"] is None


def test_git_revision_when_git_hangs(monkeypatch):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(lg.subprocess, "run", hang)
    assert lg.git_revision(REPO) == {"git_revision": None, "git_dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to build a repository")
def test_git_revision_tracked_untracked_dirty(tmp_path):
    def git(*args):
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    assert lg.git_revision(tmp_path) == {"git_revision": None, "git_dirty": None}
    git("init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "b.py").write_text("y = 1\n")
    assert lg.git_revision(tmp_path / "pkg")["git_revision"] is None
    git("add", "pkg/a.py")
    git("commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD")
    assert lg.git_revision(tmp_path / "pkg") == {"git_revision": head, "git_dirty": False}
    assert lg.git_revision(tmp_path / "pkg" / "a.py") == {"git_revision": head, "git_dirty": False}
    assert lg.git_revision(tmp_path / "venv")["git_revision"] is None
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert lg.git_revision(tmp_path / "pkg") == {"git_revision": head, "git_dirty": True}


@dataclasses.dataclass(frozen=True)
class _Config:
    lr: float = 1e-3
    betas: tuple = (0.5, 0.999)
    out: pathlib.Path = pathlib.Path("/tmp/x")


def test_run_info_appends_config_and_metadata(tmp_path):
    with RunLogger(tmp_path) as log:
        record = log.run_info(_Config())
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.run_info({"seed": np.int64(3)})
    first, second = (json.loads(line) for line in (tmp_path / "run_info.jsonl").read_text().splitlines())
    assert first == record
    assert first["config"] == {"lr": 1e-3, "betas": [0.5, 0.999], "out": "/tmp/x"}
    assert second["config"] == {"seed": 3}
    assert first["packages"]["jax"] == jax.__version__ and first["device_count"] == jax.device_count()
    texts = [
        v.tensor.string_val[0].decode()
        for e in read_events(tmp_path / "tensorboard")
        for v in e.summary.value
        if v.tag.startswith("run_info")
    ]
    assert len(texts) == 1 and '"lr": 0.001' in texts[0]


def test_logging_never_imports_tensorflow(tmp_path):
    """A stand-in ``tensorflow`` that kills the interpreter on import must never be reached."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os\nos._exit(3)\n")
    code = (
        "import numpy as np\n"
        "from gendl_jax.plots import image_grid_array\nfrom gendl_jax.train.logger import RunLogger\n"
        f"with RunLogger({str(tmp_path / 'run')!r}) as log:\n"
        "    log.scalars(0, {'a': 1.0})\n"
        "    log.image(0, 'x', image_grid_array(np.zeros((2, 3, 3, 1)), (0, 1)))\n"
        "    log.run_info({'a': 1})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(read_events(tmp_path / "run" / "tensorboard")) >= 3


def test_plots_image_grid_uses_the_shared_grid(tmp_path):
    from gendl_jax import plots

    batch = np.random.default_rng(3).uniform(size=(10, 5, 5, 1))
    plots.image_grid(batch, tmp_path / "grid.png", value_range=(0.0, 1.0), title="t")
    assert Image.open(tmp_path / "grid.png").size[0] > 0
    with pytest.raises(ValueError, match="images must have shape"):
        plots.image_grid(batch[0], tmp_path / "bad.png")
    # ncols: 10 images in one row make a wide picture, in one column a tall one.
    plots.image_grid(batch, tmp_path / "row.png", value_range=(0.0, 1.0), ncols=10)
    plots.image_grid(batch, tmp_path / "column.png", value_range=(0.0, 1.0), ncols=1)
    width, height = Image.open(tmp_path / "row.png").size
    assert width > 3 * height
    width, height = Image.open(tmp_path / "column.png").size
    assert height > 3 * width
    with pytest.raises(ValueError, match="ncols must be an int >= 1 or None"):
        plots.image_grid(batch, tmp_path / "bad.png", ncols=0)
