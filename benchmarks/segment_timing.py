"""Median time of ``segment`` in one process, for side-by-side runs of two
checkouts on the same machine.

    PYTHONPATH=<checkout> python benchmarks/segment_timing.py <checkout> SIZE SPACING SCALE

SIZE^2 float32 synthetic image (a 1024^2 held-out image tiled), A-A spacing
SPACING pixels, ``scale`` 1 or "auto"; the bundled model; one warm-up call,
then the median of 3. Prints the stemunmix it imported and
"SIZE SCALE seconds".
"""

import sys
import time
import warnings

import numpy as np

sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")
import stemunmix  # noqa: E402
from stemunmix.signals import AtomicResolutionImage  # noqa: E402
from stemunmix.synthetic import perovskite  # noqa: E402

print(stemunmix.__file__)
base, _ = perovskite(shape=1024, seed=0, pixel_size=0.396 / float(sys.argv[3]))
size = int(sys.argv[2])
reps = int(np.ceil(size / 1024))
data = np.tile(base.data.astype(np.float32), (reps, reps))[:size, :size].copy()
image = AtomicResolutionImage(data)
model = stemunmix.load_model()
kw = {"scale": 1} if sys.argv[4] == "1" else {}
image.segment(model=model, show_progressbar=False, **kw)
times = []
for _ in range(3):
    t = time.perf_counter()
    image.segment(model=model, show_progressbar=False, **kw)
    times.append(time.perf_counter() - t)
print(size, sys.argv[4], np.median(times))
