"""Two processes on localhost (``jax.distributed``, CPU collectives over gloo), 2 CPU devices each.

Each process reads its own rows of the global batch (``BatchIterator(process_index, process_count)``),
builds the global 4-device mesh, replicates the same initial state and runs ``jit_step`` for 5 steps;
process 0 writes the final state. It must match one process training on the global batch.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from gendl_jax.data.iterator import BatchIterator
from gendl_jax.data.registry import load_dataset
from gendl_jax.objectives import get_objective, wgan_gp

STEPS, BATCH_SIZE, SEED = 5, 16, 3
RTOL, ATOL = 1e-4, 2e-6
# A BatchNorm GAN on two processes is test_gendl_train_on_two_processes_matches_one_process's case (through the CLI)
CASES = {
    "wgan-gp": ("wgan-gp", wgan_gp.WGANGPConfig(hidden=(16, 16), latent_dim=3, n_critic=2)),
}

WORKER = textwrap.dedent(
    """
    import sys, time
    start = time.perf_counter()
    import jax, numpy as np
    process_id, port, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the default; explicit
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id,
                               initialization_timeout=60, shutdown_timeout_seconds=30)
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2

    from gendl_jax.data.iterator import BatchIterator
    from gendl_jax.data.registry import load_dataset
    from gendl_jax.objectives import get_objective
    from gendl_jax.train import parallel
    # by path, not as tests.train...: torch-fidelity (a test reference) installs a top-level "tests" package
    import importlib.util
    spec = importlib.util.spec_from_file_location("multiprocess_cases", "tests/train/test_multiprocess.py")
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    BATCH_SIZE, CASES, SEED, STEPS = cases.BATCH_SIZE, cases.CASES, cases.SEED, cases.STEPS

    mesh = parallel.make_mesh()
    for case, (name, config) in CASES.items():
        obj = get_objective(name)
        data = BatchIterator(load_dataset("ring8"), BATCH_SIZE, seed=SEED, inner_steps=config.inner_steps,
                             process_index=jax.process_index(), process_count=jax.process_count())
        state = parallel.replicate(obj.init(jax.random.PRNGKey(1), config, data.batch_at(0)), mesh)
        step = parallel.jit_step(obj.step, mesh)
        for s in range(STEPS):
            state, metrics = step(state, parallel.shard_batch(data.batch_at(s), mesh))
        metrics = parallel.host_metrics(metrics)
        leaves = [np.asarray(leaf.addressable_data(0)) for leaf in jax.tree_util.tree_leaves(state)]
        if jax.process_index() == 0:
            np.savez(f"{out_path}-{case}.npz", *leaves, **{"metric_" + k: v for k, v in metrics.items()})
        print(f"process {jax.process_index()}: {case} done at {time.perf_counter() - start:.1f} s", flush=True)
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# Seconds the two processes may run before they are stopped as hung: each test measured 19-25 s on a quiet 2-core
# machine and 70-91 s with two busy processes beside it.
PROCESSES_TIMEOUT = 600


def _process_env(**extra) -> dict[str, str]:
    """Each process has 2 CPU devices; ``PJRT_NPROC=4`` gives its XLA thread pool 2 threads per device, as
    test_parallel.multi_device_env explains (with 2, a collective can deadlock once dispatch runs 32 launches ahead
    of the devices, as on a loaded machine); the faulthandler prints the Python stacks of a process stopped as hung."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PJRT_NPROC="4",
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **extra,
    )
    env.pop("XLA_FLAGS", None)
    return env


def _run_processes(commands, *, cwd, env, timeout: float) -> list[str]:
    """Runs the commands at once; their combined outputs. Fails (stopping all) past ``timeout`` seconds
    or when one exits non-zero, so a hung collective cannot block the suite."""
    procs = [
        subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    deadline, logs = time.monotonic() + timeout, []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        hung = False
    except subprocess.TimeoutExpired:
        hung, pending = True, procs[len(logs) :]
        for p in pending:  # SIGABRT: the faulthandler prints where each Python thread was
            if p.poll() is None:
                p.send_signal(signal.SIGABRT)
        for p in pending:
            try:
                logs.append(p.communicate(timeout=30)[0])
            except subprocess.TimeoutExpired:
                p.kill()
                logs.append(p.communicate()[0])
    finally:  # also when pytest-timeout interrupts the wait: no process is left behind
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if hung:
        pytest.fail(
            f"the processes did not finish within {timeout} s and were stopped as hung (a collective that "
            f"not every device reached, or a process that never joined):\n" + "\n---\n".join(logs),
            pytrace=False,
        )
    assert [p.returncode for p in procs] == [0] * len(procs), "\n---\n".join(logs)
    return logs


def _one_process(name, config):
    """Reference: one process, one device, the global batch."""
    obj = get_objective(name)
    data = BatchIterator(load_dataset("ring8"), BATCH_SIZE, seed=SEED, inner_steps=config.inner_steps)
    state = obj.init(jax.random.PRNGKey(1), config, data.batch_at(0))
    step = jax.jit(obj.step)
    for s in range(STEPS):
        state, metrics = step(state, data.batch_at(s))
    return state, metrics


def test_two_processes_match_one_process(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = _process_env()
    port, out = _free_port(), str(tmp_path / "state")
    logs = _run_processes(
        [[sys.executable, "-c", WORKER, str(i), str(port), out] for i in range(2)],
        cwd=root,
        env=env,
        timeout=PROCESSES_TIMEOUT,
    )
    print("".join(logs))

    for case, (name, config) in CASES.items():
        reference, metrics = _one_process(name, config)
        saved = np.load(f"{out}-{case}.npz")
        leaves = jax.tree_util.tree_leaves(reference)
        assert len([k for k in saved.files if k.startswith("arr_")]) == len(leaves)
        max_abs = 0.0
        for i, leaf in enumerate(leaves):
            np.testing.assert_allclose(saved[f"arr_{i}"], np.asarray(leaf), rtol=RTOL, atol=ATOL)
            max_abs = max(
                max_abs, float(np.abs(saved[f"arr_{i}"].astype(np.float64) - np.asarray(leaf)).max(initial=0))
            )
        for key, value in metrics.items():
            np.testing.assert_allclose(saved[f"metric_{key}"], np.asarray(value), rtol=RTOL, atol=ATOL, err_msg=key)
        print(f"{case}: 2 processes x 2 devices vs 1 device, {STEPS} steps, max abs error {max_abs:.3g}")


CLI_ARGS = [
    "gan",
    "--hidden",
    "16",
    "16",
    "--g-batch-norm",
    "--data",
    "ring8",
    "--batch-size",
    "32",
    "--steps",
    "12",
    "--log-every",
    "3",
    "--checkpoint-every",
    "6",
    "--sample-every",
    "0",
    "--n-samples",
    "200",
    "--no-progress",
]


def test_gendl_train_on_two_processes_matches_one_process(tmp_path):
    """`gendl train --coordinator-address ...` in two processes: each reads its rows, only process 0 writes
    logs and summaries, orbax checkpoints are written once, and the result equals one process."""
    from gendl_jax.train import load_run

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = _process_env(JAX_NUM_CPU_DEVICES="2")
    port, run = _free_port(), tmp_path / "two"
    logs = _run_processes(
        [
            [
                sys.executable,
                "-m",
                "gendl_jax.cli",
                "train",
                *CLI_ARGS,
                "--out",
                str(run),
                "--coordinator-address",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ]
            for i in range(2)
        ],
        cwd=root,
        env=env,
        timeout=PROCESSES_TIMEOUT,
    )
    assert '"processes": 2' in logs[0] and '"devices": 4' in logs[0]
    assert '"objective"' not in logs[1]  # process 1 prints and writes no summary

    from gendl_jax import cli

    cli.main(["train", *CLI_ARGS, "--out", str(tmp_path / "one")])
    _, two, _ = load_run(run)
    _, one, _ = load_run(tmp_path / "one")
    max_abs = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=RTOL, atol=ATOL)
        max_abs = max(max_abs, float(np.abs(np.asarray(b, np.float64) - np.asarray(a)).max(initial=0)))
    print(f"gendl train, 2 processes x 2 devices vs 1 process, 12 steps: max abs error {max_abs:.3g}")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6, 9, 12]  # written once, by process 0
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len((run / "run_info.jsonl").read_text().splitlines()) == 1
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
