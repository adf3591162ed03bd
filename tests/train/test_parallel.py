"""One objective step, three multi-device wrappers (gendl_jax.train.parallel), 4 simulated CPU devices.

After 10 steps on the same global batches, (a) ``jit_step`` over a Mesh, (b) ``pmap_step`` and
(c) ``shard_map_step`` give the same parameters, BatchNorm statistics, optimiser states and
metrics as one device: for a GAN with a BatchNorm MLP generator (and D steps = 2), unconditional and
class-conditional, WGAN-GP (n_critic = 2), a GAN with a spectrally normalised D and top-k generator training,
a tiny DCGAN (BatchNorm in both networks; marked slow, ~35 s on 2 cores), and the denoising, KL-sparse and
contractive autoencoders and the VAE. ``pmap`` runs the same step and collectives as ``shard_map`` and is the
slowest wrapper to compile, so it is checked on ``PMAP_CASES`` only.
Measured (CPU): max abs error <= 5e-7, max relative error <= 1e-4 on entries >= 1e-3. The device count is fixed when JAX
starts, so the comparison runs in a subprocess with ``--xla_force_host_platform_device_count=4`` (one for all the
fast cases, so JAX and the package are imported once).

No multi-device test can hang: every subprocess gets enough XLA threads for its collectives (:func:`multi_device_env`
explains the deadlock that fewer threads allow on a loaded machine) and runs under a time limit; a collective that
still stalls ends in XLA's rendezvous timeout; either way the test fails with a message saying so (:func:`run_devices`).
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gendl_jax.train import parallel

STEPS = 10
RTOL, ATOL = 1e-4, 2e-6

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import jax, numpy as np
    from gendl_jax.objectives import autoencoders, contractive_ae, denoising_ae, gan, get_objective, sparse_ae, vae, wgan_gp
    from gendl_jax.train import parallel

    CASES, STEPS, RTOL, ATOL = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    assert jax.device_count() == 4, jax.devices()
    cases = [
        # ema_decay: the averaged generator's BatchNorm statistics are synchronised across devices too
        ("gan-mlp-bn", "gan", gan.GANConfig(hidden=(16, 16), latent_dim=3, g_batch_norm=True, d_steps=2,
                                            ema_decay=0.9), (2,), 16),
        ("wgan-gp", "wgan-gp", wgan_gp.WGANGPConfig(hidden=(16, 16), latent_dim=3, n_critic=2), (2,), 16),
        # the spectral norm's power-iteration vectors are state too, updated identically on every device (a GAN:
        # a WGAN critic's linear loss leaves some gradients at rounding level, which Adam's first steps amplify);
        # top-k generator training ranks the global batch: the kept fakes need not split evenly over devices
        ("gan-sn-top-k", "gan", gan.GANConfig(hidden=(16, 16), latent_dim=3, spectral_norm=True, d_steps=2,
                                              d_activation="leaky_relu", top_k_fraction=0.25, top_k_decay=0.5,
                                              top_k_period=2), (2,), 16),
        ("gan-dcgan", "gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8), (28, 28, 1), 8),
        # class-conditional: labels sharded with their examples; fakes for each device's labels
        ("cgan-mlp-bn", "gan", gan.GANConfig(hidden=(16, 16), latent_dim=3, g_batch_norm=True, d_steps=2,
                                             ema_decay=0.9, num_classes=3), (2,), 16),
        # autoencoders and the VAE on [0, 1] images: global corruption / binarisation / latent noise,
        # whole-batch terms (KL sparsity's mean activation, the contractive penalty's first examples)
        ("denoising-ae", "denoising-ae", denoising_ae.DenoisingAEConfig(hidden=(16,), latent_dim=4,
                                                                         corruption="salt_and_pepper"), (6, 6, 1), 16),
        ("sparse-ae-kl", "sparse-ae", sparse_ae.SparseAEConfig(hidden=(16,), latent_dim=8, sparsity="kl"), (6, 6, 1), 16),
        ("contractive-ae", "contractive-ae", contractive_ae.ContractiveAEConfig(hidden=(16,), latent_dim=4,
                                                                               penalty_examples=6), (6, 6, 1), 16),
        ("vae", "vae", vae.VAEConfig(hidden=(16,), latent_dim=3), (6, 6, 1), 16),
    ]
    UNIT_RANGE = {"denoising-ae", "sparse-ae-kl", "contractive-ae", "vae"}
    PMAP_CASES = set(sys.argv[5].split(","))
    mesh = parallel.make_mesh(4)

    def compare(reference, other):
        # asserts every leaf allclose; returns max |a - b|, max |a - b| / |a| over entries with |a| >= 1e-3,
        # and max |a - b| / (ATOL + RTOL |a|) (the share of the tolerance used; <= 1 passes)
        ref_leaves, other_leaves = jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(other)
        assert len(ref_leaves) == len(other_leaves)
        abs_err = rel_err = tol_used = 0.0
        for a, b in zip(ref_leaves, other_leaves):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
            diff, size = np.abs(a - b), np.abs(a)
            abs_err = max(abs_err, float(diff.max(initial=0.0)))
            rel_err = max(rel_err, float((diff / np.maximum(size, 1e-3))[size >= 1e-3].max(initial=0.0)))
            tol_used = max(tol_used, float((diff / (ATOL + RTOL * size)).max(initial=0.0)))
        return abs_err, rel_err, tol_used

    def run_case(label, name, config, shape, m):
        obj = get_objective(name)
        rng = np.random.default_rng(0)
        low = 0.0 if label in UNIT_RANGE else -1.0
        batches = [{"x": rng.uniform(low, 1, size=(config.inner_steps, m, *shape)).astype(np.float32)}
                   for _ in range(STEPS)]
        if getattr(config, "num_classes", 0):
            for batch in batches:
                batch["y"] = rng.integers(0, config.num_classes, size=(config.inner_steps, m)).astype(np.int32)
        init = lambda: obj.init(jax.random.PRNGKey(1), config, batches[0])

        seconds, start = {}, time.perf_counter()
        single, step = init(), jax.jit(obj.step)
        for batch in batches:
            single, metrics = step(single, batch)
        seconds["one device"], start = time.perf_counter() - start, time.perf_counter()

        runs = {}
        state, step = parallel.replicate(init(), mesh), parallel.jit_step(obj.step, mesh)
        for batch in batches:
            state, out = step(state, parallel.shard_batch(batch, mesh))
        runs["jit"] = (state, out)
        seconds["jit"], start = time.perf_counter() - start, time.perf_counter()

        if label in PMAP_CASES:
            state, step = parallel.stack_for_pmap(init(), 4), parallel.pmap_step(obj.step)
            for batch in batches:
                state, out = step(state, parallel.split_for_pmap(batch, 4))
            for d in range(1, 4):  # every device holds the same state
                compare(parallel.unstack_first(state), jax.tree_util.tree_map(lambda leaf: leaf[d], state))
            runs["pmap"] = (parallel.unstack_first(state), out)
            seconds["pmap"], start = time.perf_counter() - start, time.perf_counter()

        state, step = parallel.replicate(init(), mesh), parallel.shard_map_step(obj.step, mesh)
        for batch in batches:
            state, out = step(state, parallel.shard_batch(batch, mesh))
        runs["shard_map"] = (state, out)
        seconds["shard_map"] = time.perf_counter() - start

        reference_metrics = parallel.host_metrics(metrics)
        for wrapper, (state, out) in runs.items():
            abs_err, rel_err, tol_used = compare(single, state)
            got = parallel.host_metrics(out)
            assert got.keys() == reference_metrics.keys(), (got.keys(), reference_metrics.keys())
            for key in got:
                np.testing.assert_allclose(got[key], reference_metrics[key], rtol=RTOL, atol=ATOL, err_msg=key)
            print(json.dumps({"case": label, "wrapper": wrapper, "max_abs_err": abs_err, "max_rel_err": rel_err,
                              "tolerance_used": tol_used, "seconds": round(seconds[wrapper], 1),
                              "one_device_seconds": round(seconds["one device"], 1)}), flush=True)

    # All requested cases in this one process (JAX starts once); a failing case prints its error and the
    # others still run.
    for case in cases:
        if case[0] in CASES:
            try:
                run_case(*case)
            except Exception:
                import traceback
                print(json.dumps({"case": case[0], "error": traceback.format_exc()}), flush=True)
    """
)


FAST_CASES = [
    "gan-mlp-bn",
    "cgan-mlp-bn",
    "wgan-gp",
    "gan-sn-top-k",
    "denoising-ae",
    "sparse-ae-kl",
    "contractive-ae",
    "vae",
]
SLOW_CASES = ["gan-dcgan"]
# pmap and shard_map run the same step with the same axis_name collectives; pmap (the slowest wrapper to compile)
# is checked on one case of each family, shard_map and the Mesh jit on every case
PMAP_CASES = ["gan-mlp-bn", "wgan-gp", "vae", "gan-dcgan"]


N_DEVICES = 4
# Seconds one subprocess of test cases may run before it is stopped as hung. On the 2-core machine the fast cases
# took 87 s, and 374-418 s with two busy processes beside them; the DCGAN case 23 s, and 130-132 s.
CASES_TIMEOUT = 1500
RENDEZVOUS_TIMEOUT = re.compile(
    r"Termination timeout for `(?P<op>[^`]*)` of (?P<seconds>\d+) seconds exceeded\. "
    r"Exiting to ensure a consistent program state\. (?P<detail>[^\n]*)"
)


def multi_device_env(n_devices: int = N_DEVICES) -> dict[str, str]:
    """The environment of a subprocess with ``n_devices`` simulated CPU devices (read when JAX starts).

    ``PJRT_NPROC = 2 n``: XLA:CPU runs each device's part of a multi-device program as a task of one thread pool of
    max(cores, devices) threads (PJRT_NPROC stands for the core count). A collective (psum, pmean, all-gather)
    holds one thread per device, each blocked in the rendezvous until all have arrived. Dispatch is asynchronous, and
    when the devices fall 32 launches behind (``max_inflight_computations_per_device``), the next launch's dispatch
    task waits for a free slot, up to one per device, *on a pool thread*: with n threads for n devices the collective
    it waits for can then never gather its n threads. XLA ends that deadlock after 40 s ("Expected 4 threads to join
    the rendezvous, but only 3 of them arrived on time"); a loaded machine is what makes the devices fall behind.
    n threads for the collective plus n for blocked dispatch tasks make it impossible
    (:func:`test_queued_collective_launches_do_not_deadlock`; measured: 2n - 1 threads still deadlock).
    """
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
        JAX_PLATFORMS="cpu",
        PJRT_NPROC=str(2 * n_devices),
        PYTHONFAULTHANDLER="1",
    )


def run_devices(args: list[str], timeout: float, n_devices: int = N_DEVICES) -> subprocess.CompletedProcess:
    """Runs ``args`` with ``n_devices`` simulated devices (:func:`multi_device_env`), stdout and stderr captured.

    Fails the test with a message saying why, instead of hanging or returning, when the process runs past ``timeout``
    seconds (it is sent SIGABRT first, so that the faulthandler prints where every Python thread was) or when XLA ended
    it for a collective rendezvous that not every device thread reached.
    """
    proc = subprocess.Popen(
        args, env=multi_device_env(n_devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
        proc.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    finally:  # also when pytest-timeout interrupts the wait: no process is left behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if hung:
        pytest.fail(
            f"the {n_devices}-device subprocess did not finish within {timeout} s and was stopped as hung "
            f"(its threads' stacks are in the stderr below)\n--- stdout (end) ---\n{stdout[-3000:]}"
            f"\n--- stderr (end) ---\n{stderr[-6000:]}",
            pytrace=False,
        )
    stalled = RENDEZVOUS_TIMEOUT.search(stderr)
    if stalled:
        pytest.fail(
            f"XLA:CPU's collective rendezvous timed out after {stalled['seconds']} s and ended the "
            f"{n_devices}-device subprocess: {stalled['detail']} (`{stalled['op']}`). A device thread never "
            f"reached the collective: a deadlock (see multi_device_env) or a device stalled for that long."
            f"\n--- stdout (end) ---\n{stdout[-3000:]}\n--- stderr (end) ---\n{stderr[-3000:]}",
            pytrace=False,
        )
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _run_cases(cases: list[str]) -> dict[str, list[dict]]:
    result = run_devices(
        [sys.executable, "-c", SCRIPT, ",".join(cases), str(STEPS), str(RTOL), str(ATOL), ",".join(PMAP_CASES)],
        timeout=CASES_TIMEOUT,
    )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_case = {case: [r for r in rows if r["case"] == case] for case in cases}
    if result.returncode != 0:  # the process itself failed: every case reports it
        for case in cases:
            by_case[case].append({"case": case, "error": result.stdout[-3000:] + result.stderr[-3000:]})
    return by_case


@pytest.fixture(scope="module")
def fast_case_rows(request):
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_wrappers_match_one_device"
    ]
    return _run_cases(selected or FAST_CASES)


def _check_rows(case, rows):
    errors = [r["error"] for r in rows if "error" in r]
    assert not errors, "\n".join(errors)
    for row in rows:
        print(row)
    wrappers = ("jit", "pmap", "shard_map") if case in PMAP_CASES else ("jit", "shard_map")
    assert [(r["case"], r["wrapper"]) for r in rows] == [(case, w) for w in wrappers]


# the subprocess's own limit ends a hang first, with the clearer message; the first test also runs the fixture
@pytest.mark.timeout(CASES_TIMEOUT + 300)
@pytest.mark.parametrize("case", FAST_CASES)
def test_wrappers_match_one_device(case, fast_case_rows):
    _check_rows(case, fast_case_rows[case])


@pytest.mark.slow
@pytest.mark.timeout(CASES_TIMEOUT + 300)
@pytest.mark.parametrize("case", SLOW_CASES)
def test_wrappers_match_one_device_slow(case):
    _check_rows(case, _run_cases([case])[case])


QUEUED_LAUNCHES = """
import sys
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from gendl_jax.train import parallel

mesh = parallel.make_mesh(4)

def body(x):  # about 1 ms of work per device, then an all-reduce
    for _ in range(4):
        x = jnp.tanh(x @ x.T)
    return jax.lax.psum(x, "data") / 4

step = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
x = jax.device_put(jnp.full((4 * 256, 256), 1 / 256, jnp.float32), NamedSharding(mesh, P("data")))
for _ in range(int(sys.argv[1])):
    x = step(x)  # asynchronous: the loop runs ahead of the devices
print("finished", float(x[0, 0]))
"""


def test_queued_collective_launches_do_not_deadlock():
    """200 launches of an all-reduce program queued without waiting, far more than the 32 a device admits in flight:
    they finish. With XLA's default pool (as many threads as devices on a machine with fewer cores) this deadlocks
    at once, loaded or not: the dispatch tasks waiting for an in-flight slot hold the threads the queued collective
    needs (see multi_device_env)."""
    result = run_devices([sys.executable, "-c", QUEUED_LAUNCHES, "200"], timeout=300)
    assert result.returncode == 0 and "finished" in result.stdout, result.stdout + result.stderr[-3000:]


def test_make_mesh_rejects_bad_device_counts():
    import jax

    available = jax.device_count()
    with pytest.raises(ValueError, match=rf"n_devices \(--devices\).*{available} available.*got {available + 1}"):
        parallel.make_mesh(available + 1)
    with pytest.raises(ValueError, match="n_devices"):
        parallel.make_mesh(0)
    with pytest.raises(TypeError, match="n_devices"):
        parallel.make_mesh(1.5)
    assert parallel.make_mesh().devices.size == available


def test_shard_batch_rejects_indivisible_batch():
    """A minibatch of 3 rows cannot be split over 2 devices; with 1 device any size works."""
    import jax

    if jax.device_count() < 2:
        # the main test process has one CPU device: check the message through split_for_pmap,
        # and shard_batch's own check in a subprocess
        with pytest.raises(ValueError, match=r"batch_size=3 .*divisible by the number of devices, 2"):
            parallel.split_for_pmap({"x": np.zeros((1, 3, 2), np.float32)}, 2)
        code = (
            "import numpy as np, pytest\n"
            "from gendl_jax.train import parallel\n"
            "with pytest.raises(ValueError, match=r'batch_size=3 .*divisible by the number of devices, 2'):\n"
            "    parallel.shard_batch({'x': np.zeros((1, 3, 2), np.float32)}, parallel.make_mesh(2))\n"
            "print('ok')\n"
        )
        result = run_devices([sys.executable, "-c", code], timeout=300, n_devices=2)
        assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr
    else:
        with pytest.raises(ValueError, match=r"batch_size=3 .*divisible by the number of devices, 2"):
            parallel.shard_batch({"x": np.zeros((1, 3, 2), np.float32)}, parallel.make_mesh(2))
    batch = parallel.shard_batch({"x": np.arange(6, dtype=np.float32).reshape(1, 3, 2)}, parallel.make_mesh(1))
    np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(6).reshape(1, 3, 2))
