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
        cols_t, _, win_t = _pipeline(lazy.segment(tile=128), lazy)
        np.testing.assert_array_equal(prob_l.data.compute(), prob_e.data)
    # Workers run torch on one thread: float32 rounding may differ in the last bit.
    np.testing.assert_allclose(prob_l.data.compute(), prob_e.data, rtol=0, atol=1e-6)
    assert len(cols_c) == len(cols_t) == len(cols_e) > 1000
    for cols in (cols_c, cols_t):
        np.testing.assert_array_equal(cols.labels, cols_e.labels)
        np.testing.assert_allclose(cols.xy, cols_e.xy, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(wcols_c.labels, wcols_e.labels)
    np.testing.assert_allclose(wcols_c.xy, wcols_e.xy, rtol=0, atol=1e-6)
    np.testing.assert_allclose(win_c, win_e, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(win_t, win_e)
