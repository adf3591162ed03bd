"""Checkpoints: round trip with data position, retention, shape mismatch, corruption fallback,
and a real SIGKILL-and-resume run that ends bitwise identical to an uninterrupted one."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gendl_jax import data as gdata
from gendl_jax.objectives import gan, get_objective
from gendl_jax.train import checkpoints


def _gan_state(hidden=(8, 8), seed=0):
    obj = get_objective("gan")
    x = np.random.default_rng(seed).normal(size=(1, 16, 2)).astype(np.float32)
    return obj.init(jax.random.PRNGKey(seed), gan.GANConfig(hidden=hidden, g_batch_norm=True), {"x": x})


def _assert_same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_keeps_every_leaf_and_the_data_position(tmp_path):
    state = _gan_state(seed=3)
    it = gdata.BatchIterator(gdata.load_dataset("ring8"), 16, seed=5)
    manager = checkpoints.checkpoint_manager(tmp_path)
    checkpoints.save(manager, 7, state, metrics={"g_loss": 0.5}, data_position=it.position(7), wait=True)
    restored, meta = checkpoints.restore_with_meta(manager, _gan_state(seed=4))
    _assert_same(restored, state)
    assert meta["step"] == 7 and meta["metrics"] == {"g_loss": 0.5}
    assert meta["data_position"] == {
        "dataset": "ring8",
        "dataset_size": None,
        "seed": 5,
        "batch_size": 16,
        "inner_steps": 1,
        "next_step": 7,
    }
    assert meta["sha256"] == checkpoints.state_digest(state) != checkpoints.state_digest(_gan_state(seed=4))
    it.check_resumable(meta["data_position"])
    with pytest.raises(ValueError, match="seed: saved 5, now 6"):
        gdata.BatchIterator(gdata.load_dataset("ring8"), 16, seed=6).check_resumable(meta["data_position"])
    manager.close()


def test_keep_last_and_best_by_metric(tmp_path):
    state = _gan_state()
    manager = checkpoints.checkpoint_manager(tmp_path, keep_last=2, best_metric="loss", best_mode="min")
    losses = {1: 3.0, 2: 0.5, 3: 2.0, 4: 1.0, 5: 4.0}
    for step, loss in losses.items():
        checkpoints.save(manager, step, state, metrics={"loss": loss}, wait=True)
    assert sorted(manager.all_steps()) == [2, 4, 5]
    assert manager.best_step() == 2
    manager.close()
    manager = checkpoints.checkpoint_manager(
        tmp_path / "max", keep_last=1, best_metric="acc", best_mode="max", keep_best=2
    )
    for step, acc in {1: 0.9, 2: 0.1, 3: 0.8, 4: 0.2}.items():
        checkpoints.save(manager, step, state, metrics={"acc": acc}, wait=True)
    assert sorted(manager.all_steps()) == [1, 3, 4]
    manager.close()


def test_other_model_shape_names_the_mismatching_leaves(tmp_path):
    manager = checkpoints.checkpoint_manager(tmp_path)
    checkpoints.save(manager, 1, _gan_state(hidden=(8, 8)), wait=True)
    with pytest.raises(ValueError) as e:
        checkpoints.restore(manager, _gan_state(hidden=(8, 12)))
    message = str(e.value)
    assert "does not fit this model" in message
    assert "generator/params/output/kernel: checkpoint shape (8, 2), model expects (12, 2)" in message
    assert "(8, 8), model expects (8, 12)" in message
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        checkpoints.restore(manager, _gan_state(hidden=(8, 8, 8)))
    manager.close()


def _data_files(step_dir: pathlib.Path):
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "meta"])
def test_corrupted_latest_falls_back_to_previous_with_a_warning(tmp_path, damage):
    good, newer = _gan_state(seed=1), _gan_state(seed=2)
    manager = checkpoints.checkpoint_manager(tmp_path)
    checkpoints.save(manager, 10, good, wait=True)
    checkpoints.save(manager, 20, newer, wait=True)
    manager.close()
    step_dir = tmp_path / "20"
    if damage == "meta":
        (step_dir / "meta" / "metadata").write_text("{not json")
    else:
        files = _data_files(step_dir)
        assert files, list(step_dir.rglob("*"))
        for path in files:
            raw = bytearray(path.read_bytes())
            if damage == "truncate":
                raw = raw[: len(raw) // 2]
            else:
                for i in range(len(raw) // 2, len(raw), 7):
                    raw[i] ^= 0xFF
            path.write_bytes(bytes(raw))
    manager = checkpoints.checkpoint_manager(tmp_path)
    with pytest.warns(RuntimeWarning, match="/20 is corrupted; restored checkpoint 10 instead. Cause: "):
        restored, meta = checkpoints.restore_with_meta(manager, _gan_state(seed=9))
    assert meta["step"] == 10
    _assert_same(restored, good)
    with pytest.raises(checkpoints.CorruptCheckpointError):
        checkpoints.restore(manager, _gan_state(seed=9), step=20)
    manager.close()


def _flip_bytes(step_dir: pathlib.Path) -> None:
    files = _data_files(step_dir)
    assert files, list(step_dir.rglob("*"))
    for path in files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, len(raw), 7):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))


def _tree_bytes(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_set_aside_corrupted_moves_them_and_the_steps_can_be_saved_again(tmp_path):
    """The two newest checkpoints corrupted: restoring with set_aside_corrupted=True restores the oldest,
    renames the two (bytes untouched) so that orbax no longer lists them, and their steps save again."""
    good, newer, newest, redo = (_gan_state(seed=s) for s in (1, 2, 3, 4))
    manager = checkpoints.checkpoint_manager(tmp_path, keep_last=3)
    for step, state in ((10, good), (20, newer), (30, newest)):
        checkpoints.save(manager, step, state, wait=True)
    manager.close()
    _flip_bytes(tmp_path / "20")
    (tmp_path / "30" / "meta" / "metadata").write_text("{not json")
    damaged = {step: _tree_bytes(tmp_path / str(step)) for step in (20, 30)}
    manager = checkpoints.checkpoint_manager(tmp_path, keep_last=3)
    with pytest.warns(RuntimeWarning) as record:
        restored, meta = checkpoints.restore_with_meta(manager, _gan_state(seed=9), set_aside_corrupted=True)
    assert meta["step"] == 10
    _assert_same(restored, good)
    messages = sorted(str(w.message) for w in record if "is corrupted" in str(w.message))
    assert len(messages) == 2
    for step, message in zip((20, 30), messages):
        moved = sorted(tmp_path.glob(f"{step}{checkpoints.CORRUPT_SUFFIX}*"))
        assert len(moved) == 1 and moved[0].is_dir()
        assert f"/{step} is corrupted; restored checkpoint 10 instead; moved it to {moved[0]}" in message
        assert _tree_bytes(moved[0]) == damaged[step]  # moved, not rewritten
        assert not (tmp_path / str(step)).exists()
    assert manager.all_steps() == [10] and manager.latest_step() == 10
    checkpoints.save(manager, 20, redo, wait=True)  # raised "already exists" before the fix (issue 27)
    checkpoints.save(manager, 30, redo, wait=True)
    checkpoints.save(manager, 40, redo, wait=True)  # retention (keep 3) deletes 10, not the set-aside ones
    manager.close()
    manager = checkpoints.checkpoint_manager(tmp_path, keep_last=3)
    assert manager.all_steps() == [20, 30, 40]
    _assert_same(checkpoints.restore(manager, _gan_state(seed=9), step=20), redo)
    manager.close()
    assert len(list(tmp_path.glob(f"*{checkpoints.CORRUPT_SUFFIX}*"))) == 2


def test_nothing_is_moved_when_no_checkpoint_is_intact(tmp_path):
    manager = checkpoints.checkpoint_manager(tmp_path)
    checkpoints.save(manager, 5, _gan_state(seed=1), wait=True)
    manager.close()
    _flip_bytes(tmp_path / "5")
    manager = checkpoints.checkpoint_manager(tmp_path)
    with pytest.raises(checkpoints.CorruptCheckpointError, match="no intact checkpoint"):
        checkpoints.restore_with_meta(manager, _gan_state(seed=9), set_aside_corrupted=True)
    assert manager.all_steps() == [5] and sorted(p.name for p in tmp_path.iterdir()) == ["5"]
    manager.close()


def _final_state(run: pathlib.Path):
    from gendl_jax.train import load_run

    _, state, _ = load_run(run)
    return state


KILL_ARGS = [
    "gan",
    "--hidden",
    "32",
    "32",
    "--data",
    "ring8",
    "--batch-size",
    "64",
    "--steps",
    "1600",
    "--checkpoint-every",
    "200",
    "--log-every",
    "1",
    "--sample-every",
    "0",
    "--n-samples",
    "100",
    "--no-progress",
]


def _gendl(out, *extra):
    return [sys.executable, "-m", "gendl_jax.cli", "train", *KILL_ARGS, "--out", str(out), *extra]


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    """SIGKILL a real training process (mid-save when we catch one), resume it, compare bit for bit."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # The uninterrupted reference trains beside the run that gets killed (the two are independent).
    straight_log = open(tmp_path / "straight.stderr", "w")  # noqa: SIM115 (closed in the finally below)
    straight = subprocess.Popen(_gendl(tmp_path / "straight"), env=env, stdout=subprocess.DEVNULL, stderr=straight_log)
    try:
        _kill_resume_and_compare(tmp_path, env, straight)
    finally:
        if straight.poll() is None:
            straight.kill()
        straight_log.close()


def _kill_resume_and_compare(tmp_path, env, straight):
    run = tmp_path / "killed"
    proc = subprocess.Popen(_gendl(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = run / "checkpoints"
    deadline = time.time() + 300
    mid_save = False
    try:
        while time.time() < deadline and proc.poll() is None:
            steps = [int(p.name) for p in ckpt.glob("[0-9]*") if p.name.isdigit()] if ckpt.is_dir() else []
            if steps and max(steps) >= 600:  # a mid-save kill if one of the saves 600..1200 is caught
                tmp = [p for p in ckpt.iterdir() if "tmp" in p.name]
                if tmp or max(steps) >= 1200:
                    mid_save = bool(tmp)
                    break
            time.sleep(0.001)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last_done = max(logged)

    manager = checkpoints.checkpoint_manager(ckpt)
    latest = manager.latest_step()
    manager.close()
    assert latest is not None and latest % 200 == 0 and latest <= last_done
    lost = last_done - latest
    print(
        f"killed after step {last_done}, latest complete checkpoint {latest}: {lost} steps lost; "
        f"mid-save kill: {mid_save}"
    )
    assert lost < 2 * 200  # at most the steps since the last complete checkpoint (plus one in flight)

    resumed = subprocess.run(_gendl(run, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert straight.wait(timeout=600) == 0, (tmp_path / "straight.stderr").read_text()[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == latest
    _assert_same(_final_state(run), _final_state(tmp_path / "straight"))
    np.testing.assert_array_equal(np.load(run / "samples.npy"), np.load(tmp_path / "straight" / "samples.npy"))
    # The resumed log has each step once: the lines written after the checkpoint were replaced.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps == list(range(1, 1601))


def test_checkpoints_of_the_earlier_single_item_layout_still_restore(tmp_path):
    """Runs saved before the state/meta layout (one ``default`` item, no digest) resume."""
    import orbax.checkpoint as ocp

    state = _gan_state(seed=5)
    old = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(create=True))
    old.save(3, args=ocp.args.StandardSave(state))
    old.wait_until_finished()
    old.close()
    assert (tmp_path / "3" / "default").is_dir()
    manager = checkpoints.checkpoint_manager(tmp_path)
    restored, meta = checkpoints.restore_with_meta(manager, _gan_state(seed=6))
    _assert_same(restored, state)
    assert meta == {"step": 3}
    with pytest.raises(ValueError, match="does not fit this model"):
        checkpoints.restore(manager, _gan_state(hidden=(8, 12)))
    manager.close()


def test_checkpoints_written_before_an_empty_subtree_was_added_still_restore(tmp_path):
    """States gained ``generator_ema`` (``{}`` when off) after runs were saved without it: the leaves
    are the same, only the container tree differs, and such checkpoints restore."""
    from flax import struct

    @struct.dataclass
    class StateBeforeEMA:  # the adversarial state's fields before generator_ema
        step: object
        generator: object
        discriminator: object
        key: object
        hparams: object

    state = _gan_state(seed=7)
    assert state.generator_ema == {}
    old = StateBeforeEMA(state.step, state.generator, state.discriminator, state.key, state.hparams)
    manager = checkpoints.checkpoint_manager(tmp_path)
    checkpoints.save(manager, 4, old, data_position={"next_step": 4}, wait=True)
    restored, meta = checkpoints.restore_with_meta(manager, _gan_state(seed=8))
    assert type(restored) is type(state) and restored.generator_ema == {}
    _assert_same(restored, state)
    assert meta["data_position"] == {"next_step": 4}
    with pytest.raises(ValueError, match="does not fit this model"):
        checkpoints.restore(manager, _gan_state(hidden=(8, 12)))
    manager.close()


CORRUPT_ARGS = [
    "gan",
    "--hidden",
    "32",
    "32",
    "--data",
    "ring8",
    "--batch-size",
    "64",
    "--steps",
    "400",
    "--checkpoint-every",
    "100",
    "--log-every",
    "10",
    "--sample-every",
    "0",
    "--n-samples",
    "100",
    "--no-progress",
]


def test_resume_past_a_corrupted_latest_checkpoint_runs_to_the_end_bitwise_identical(tmp_path):
    """issue 27: ``gendl train gan --data ring8 --checkpoint-every 100 --steps 400``, its latest checkpoint
    (300) corrupted by flipped bytes, ``--resume`` restored 200 and then stopped at step 300 ("Checkpoint for
    step 300 already exists"). Now the corrupted folder is set aside, the run ends bitwise identical to the
    uninterrupted one, and the folder is still there under its new name.

    One real CLI run trains 400 steps; its final state and samples are the reference. The folder is then
    made to look like the same run killed after step 350: checkpoint 400, summary.json and the log rows
    after 350 removed; checkpoint 300's data bytes flipped."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "gendl_jax.cli", "train", *CORRUPT_ARGS, "--out", str(run)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    reference, reference_samples = _final_state(run), np.load(run / "samples.npy")
    ckpt = run / "checkpoints"
    assert sorted(int(p.name) for p in ckpt.iterdir()) == [200, 300, 400]
    shutil.rmtree(ckpt / "400")
    (run / "summary.json").unlink()
    (run / "samples.npy").unlink()
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (run / "metrics.jsonl").write_text("".join(r + "\n" for r in rows if json.loads(r)["step"] <= 350))
    _flip_bytes(ckpt / "300")
    damaged = _tree_bytes(ckpt / "300")

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    moved = list(ckpt.glob(f"300{checkpoints.CORRUPT_SUFFIX}*"))
    assert len(moved) == 1, sorted(p.name for p in ckpt.iterdir())
    assert f"/300 is corrupted; restored checkpoint 200 instead; moved it to {moved[0]}" in resumed.stderr
    assert _tree_bytes(moved[0]) == damaged
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == 200
    _assert_same(_final_state(run), reference)
    np.testing.assert_array_equal(np.load(run / "samples.npy"), reference_samples)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps == list(range(10, 401, 10))
    manager = checkpoints.checkpoint_manager(ckpt)
    assert manager.all_steps() == [200, 300, 400]
    manager.close()
