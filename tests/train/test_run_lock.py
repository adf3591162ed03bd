"""A run holds its folder: a second process fails at once naming the holder, the lock dies with its
process (even by SIGKILL), and two real ``gendl train`` runs on one --out leave one run's rows only."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from gendl_jax.train.run_lock import (
    LOCK_NAME,
    RunFolderBusyError,
    hold_run_folder,
    read_holder,
)

ENV = dict(os.environ, JAX_PLATFORMS="cpu")

HOLDER = textwrap.dedent("""
    import sys, time
    from gendl_jax.train.run_lock import hold_run_folder
    with hold_run_folder(sys.argv[1], enabled=True):
        print("held", flush=True)
        time.sleep(120)
""")

TRY = textwrap.dedent("""
    import sys
    from gendl_jax.train.run_lock import RunFolderBusyError, hold_run_folder
    try:
        with hold_run_folder(sys.argv[1], enabled=True):
            print("took it")
    except RunFolderBusyError as e:
        print(e, file=sys.stderr)
        sys.exit(3)
""")


def _start_holder(folder):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # returns when the holder prints, or at its exit
    assert line.strip() == "held", proc.stderr.read() if proc.poll() is not None else line
    return proc


def test_a_held_folder_is_refused_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "run"  # created by the holder
    holder = _start_holder(folder)
    try:
        record = read_holder(folder)
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        assert str(folder) in record["command"]
        t0 = time.perf_counter()
        with (
            pytest.raises(RunFolderBusyError) as info,
            hold_run_folder(folder, enabled=True),
        ):
            pytest.fail("took a folder another process holds")
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.5, elapsed  # at once: never waits for the holder
        message = str(info.value)
        assert isinstance(info.value, FileExistsError)
        assert f"run folder {folder} is in use by process {holder.pid} on {socket.gethostname()}" in message
        assert record["started"] in message
        assert info.value.holder == record and info.value.folder == folder
        # another process is refused the same way
        other = subprocess.run(
            [sys.executable, "-c", TRY, str(folder)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert other.returncode == 3, other.stderr
        assert f"in use by process {holder.pid}" in other.stderr
        assert holder.poll() is None  # the refused attempts did not disturb the holder
        assert read_holder(folder) == record
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_the_lock_dies_with_its_process_even_by_sigkill(tmp_path):
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    try:
        with pytest.raises(RunFolderBusyError), hold_run_folder(folder, enabled=True):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert holder.returncode == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
    assert read_holder(folder)["pid"] == holder.pid  # its record stays, the lock does not
    with hold_run_folder(folder, enabled=True) as path:
        assert path == folder / LOCK_NAME
        assert read_holder(folder)["pid"] == os.getpid()
    assert read_holder(folder) == {}  # a normal release clears the record
    with hold_run_folder(folder, enabled=True):  # and the folder can be taken again
        pass


def test_one_process_holding_twice_is_refused_and_disabled_takes_nothing(tmp_path):
    """flock locks belong to an open file: a second hold in the same process is refused too (a run
    cannot train into a folder it is already training into); enabled=False (processes other than 0)
    neither locks nor creates anything."""
    with hold_run_folder(tmp_path / "run", enabled=True):
        with (
            pytest.raises(RunFolderBusyError, match=f"in use by process {os.getpid()}"),
            hold_run_folder(tmp_path / "run", enabled=True),
        ):
            pass
        with hold_run_folder(tmp_path / "run", enabled=False) as path:
            assert path is None
    with hold_run_folder(tmp_path / "other", enabled=False) as path:
        assert path is None
    assert not (tmp_path / "other").exists()


def _gendl(out, seed):
    return [
        sys.executable,
        "-m",
        "gendl_jax.cli",
        "train",
        "gan",
        "--hidden",
        "32",
        "32",
        "--data",
        "ring8",
        "--steps",
        "50",
        "--log-every",
        "5",
        "--checkpoint-every",
        "25",
        "--sample-every",
        "0",
        "--n-samples",
        "100",
        "--no-progress",
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]


def test_two_real_runs_on_one_folder_one_wins_the_other_stops_at_once(tmp_path):
    """issue 27: two ``gendl train`` processes a second apart on one --out both finished and interleaved
    metrics.jsonl. Now exactly one trains; the other exits non-zero naming it, while the winner still runs."""
    out = tmp_path / "run"
    procs = []
    try:
        for seed in (1, 2):
            procs.append(
                subprocess.Popen(
                    _gendl(out, seed),
                    env=ENV,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            time.sleep(1.0)
        deadline = time.time() + 600
        first_exit = None
        while time.time() < deadline and any(p.poll() is None for p in procs):
            if first_exit is None and any(p.poll() is not None for p in procs):
                first_exit = next(i for i, p in enumerate(procs) if p.poll() is not None)
                still_running = procs[1 - first_exit].poll() is None
            time.sleep(0.05)
        assert all(p.poll() is not None for p in procs), "a run did not finish in 10 minutes"
        results = [(p.returncode, *p.communicate(timeout=30)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [r[0] for r in results]
    assert sorted(code == 0 for code in codes) == [False, True], results
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert first_exit == loser and still_running, "the refused run should stop while the other trains"
    err = results[loser][2]
    assert "Traceback" not in err and [line for line in err.splitlines() if "error:" in line] == [
        next(line for line in err.splitlines() if line.startswith("gendl train: error: run folder"))
    ], err
    assert f"is in use by process {procs[winner].pid} on {socket.gethostname()}" in err
    assert f"--seed {winner + 1}" in err  # the holder's command line
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == list(range(5, 51, 5))  # one run's rows, each step once
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == winner + 1
    assert read_holder(out) == {}
