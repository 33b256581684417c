"""The lazy pipeline on a dask.distributed LocalCluster (two worker processes):
results equal to the threaded scheduler and to eager."""

import warnings

import dask
import numpy as np
import pytest

from stemunmix.synthetic import perovskite

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def images():
    eager, _ = perovskite(shape=(520, 480), seed=11)
    lazy = eager.as_lazy()
    lazy.data = lazy.data.rechunk((260, 240))
    return eager, lazy


def _pipeline(prob, image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        columns = prob.find_columns(image=image)
        windows = prob.local_descriptors(16, columns, classes="B")
    data = windows.data.compute() if windows._lazy else windows.data
    return columns, windows.columns, data


def test_cluster_equals_threads_and_eager(client, images):
    eager, lazy = images
    prob_e = eager.segment(tile=128)
    cols_e, wcols_e, win_e = _pipeline(prob_e, eager)
    prob_l = lazy.segment(tile=128)
    cols_c, wcols_c, win_c = _pipeline(prob_l, lazy)  # on the cluster
    with dask.config.set(scheduler="threads"):
        prob_t = lazy.segment(tile=128)
        cols_t, _, win_t = _pipeline(prob_t, lazy)
        # With a distributed client alive in this process (its event loop
        # busy beside torch's OpenMP pool), the threaded run's float32 maps
        # differ from eager in the last bit in places (1.8e-7 at most);
        # without one they are equal (test_one_path).
        np.testing.assert_allclose(prob_t.data.compute(), prob_e.data, rtol=0,
                                   atol=1e-6)  # fmt: skip
    # Workers run torch on one thread: float32 rounding may differ in the last bit.
    np.testing.assert_allclose(prob_l.data.compute(), prob_e.data, rtol=0, atol=1e-6)
    assert len(cols_c) == len(cols_t) == len(cols_e) > 1000
    for cols in (cols_c, cols_t):
        np.testing.assert_array_equal(cols.labels, cols_e.labels)
        np.testing.assert_allclose(cols.xy, cols_e.xy, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(wcols_c.labels, wcols_e.labels)
    np.testing.assert_allclose(wcols_c.xy, wcols_e.xy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(win_c, win_e, rtol=0, atol=1e-6)
    np.testing.assert_allclose(win_t, win_e, rtol=0, atol=1e-6)


def test_killed_worker_does_not_change_the_result(client, images):
    """SIGKILL one worker process mid-compute: the nanny restarts it, the
    scheduler recomputes what was lost, and the maps are unchanged."""
    import os
    import signal
    import time

    eager, lazy = images
    reference = eager.segment(tile=64).data
    pids = client.run(os.getpid)
    future = client.compute(lazy.segment(tile=64).data)
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        held = {w: k for w, k in client.has_what().items() if k}
        if held:
            victim = sorted(held)[0]
        else:
            time.sleep(0.05)
    assert victim is not None and not future.done(), "the run ended before the kill"
    os.kill(pids[victim], signal.SIGKILL)
    result = future.result(timeout=300)
    np.testing.assert_allclose(result, reference, rtol=0, atol=1e-6)
    client.wait_for_workers(2, timeout=120)
    assert set(client.run(os.getpid).values()) != set(pids.values())


@pytest.mark.parametrize("suffix", [".hspy", ".zspy"])
def test_cli_analyze_runs_on_a_scheduler_address(client, tmp_path, suffix):
    """`stemunmix analyze FILE --scheduler ADDRESS` computes on that cluster:
    .zspy read by the workers, HDF5 read here and sent with the graph."""
    import hyperspy.api as hs

    from stemunmix.cli import main

    image, _ = perovskite(shape=256, seed=5, domains="two_stripes")
    image.save(tmp_path / f"synthetic{suffix}")

    def transitions(dask_scheduler):
        return dask_scheduler.transition_counter

    before = client.run_on_scheduler(transitions)
    code = main(["analyze", str(tmp_path / f"synthetic{suffix}"), "--components", "2",
                 "--no-scree", "--out", str(tmp_path / "out"),
                 "--scheduler", client.scheduler.address])  # fmt: skip
    assert code == 0
    assert client.run_on_scheduler(transitions) - before > 100
    assert len(hs.load(tmp_path / "out" / "image.zspy").columns) > 200
    ld = hs.load(tmp_path / "out" / "descriptors.zspy", lazy=True)
    assert ld.learning_results.loadings.shape[1] == 2


def test_release_memory_returns_what_a_worker_freed(client):
    """Freed memory a worker's heap kept (300 MB of small buffers behind one
    still in use) goes back to the system."""
    from stemunmix.core.engine import release_memory

    def fragment():
        import sys

        junk = [bytearray(100_000) for _ in range(3000)]
        sys._stemunmix_pin = bytearray(100_000)  # holds the top of the heap
        del junk

    def rss():
        import psutil

        return psutil.Process().memory_info().rss

    worker = sorted(client.scheduler_info()["workers"])[0]
    client.submit(fragment, workers=[worker], pure=False).result()
    before = client.run(rss, workers=[worker])[worker]
    release_memory()
    after = client.run(rss, workers=[worker])[worker]
    assert before - after > 150e6, (before, after)
    release_memory()  # and again: nothing left to return, no error


def test_a_worker_returns_what_each_block_freed(client):
    """A lazy step's graph, computed by dask (no release_memory call): each
    block task frees 300 MB of small buffers behind one it keeps, and the
    worker gives it back after each task."""
    import dask.array as da

    from stemunmix.core import engine

    def fragment(region, frame, box, origin):
        import sys

        junk = [bytearray(100_000) for _ in range(3000)]
        sys.__dict__.setdefault("_stemunmix_pins", []).append(bytearray(100_000))
        del junk
        return np.zeros((1, box[1] - box[0], box[3] - box[2]), np.float32)

    def rss():
        import psutil

        return psutil.Process().memory_info().rss

    data = da.zeros((256, 256), chunks=128, dtype=np.float32)
    before = client.run(rss)
    out = engine.run_image(engine.Step(fragment), data, (1,), 128, 0)
    assert engine.is_lazy(out)
    out.compute()  # four tasks: 1.2 GB freed in all, none of it kept
    after = client.run(rss)
    grown = max(after[w] - before[w] for w in before)
    assert grown < 150e6, (before, after)
