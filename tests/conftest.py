"""Under pytest-xdist (``make test`` runs ``-n auto``), each worker and the interpreters its tests
start get an equal share of the cores as threads (``OMP_NUM_THREADS``), set before torch is
imported: workers with torch's default of one thread per core would oversubscribe the machine."""

import os

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))
