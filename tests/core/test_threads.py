"""The thread budget: numba loops leave torch's thread count alone, and a
worker thread runs each compiled step on its budget."""

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stemunmix.core import peaks, threads  # noqa: E402


@pytest.fixture
def one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_numba_loop_keeps_the_users_torch_threads(one_torch_thread):
    prob = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    found = peaks.find_peaks(prob, 3, 0.5)  # numba's parallel loops
    assert len(found) > 0
    assert torch.get_num_threads() == 1


def test_worker_thread_runs_on_its_budget(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen = {}

    import numba

    def work():
        before = torch.get_num_threads()
        with threads.limited():
            seen["inside"] = numba.get_num_threads()
            peaks.find_peaks(np.ones((8, 8), np.float32), 2)
        seen["restored"] = torch.get_num_threads() == before
        seen["budget"] = threads.budget()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"inside": 1, "restored": True, "budget": 1}
