"""`--dask ADDRESS`: the experiments' model fits on a Dask cluster, through joblib's dask backend.

Only the joblib calls of the experiments (the searches and the repeated-seed evaluations) go to
the cluster; feature extraction reads the audio files and stays on this machine, as do the few
single fits (loss curves, the final model). Every estimator and split is seeded explicitly, so
the order in which workers finish does not matter and the results equal a local run's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from joblib import parallel_config

from ser_stream.errors import UserError

if TYPE_CHECKING:
    from distributed import Client

#: Distributions whose versions decide the numbers: a worker with other versions would not give a local run's results.
SAME_AS_HERE = ("scikit-learn", "numpy", "scipy", "ser-stream")


@dataclass(frozen=True)
class Cluster:
    """Where the model fits ran, for the report."""

    scheduler: str
    workers: int
    threads: int

    def to_dict(self) -> dict[str, str | int]:
        return {"scheduler": self.scheduler, "workers": self.workers, "threads": self.threads}


@contextmanager
def connect(address: str) -> Iterator[Cluster]:
    """A client of the scheduler at ``address`` for the whole run, checked before any work starts.

    An unreachable scheduler, one without workers, or workers whose libraries differ from ours
    fail here, before minutes of feature extraction, as one-line errors. Waits are bounded by
    Dask's ``distributed.comm.timeouts.connect`` (30 s; ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).
    """
    import dask
    from dask.distributed import Client

    try:
        client = Client(address)
    except ValueError as error:  # malformed: no port, unknown scheme
        raise UserError(f"--dask {address}: {error}") from None
    except OSError as error:  # refused, unknown host or silent: Dask retries until its connect timeout
        raise UserError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    with client:
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise UserError(f"the Dask scheduler at {address} has no workers (waited {timeout})") from None
        differences = version_differences(client)
        if differences:
            raise UserError(f"Dask workers at {address} differ from this machine: {differences}")
        threads = client.ncores()
        trimming = [value for value in client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values() if value is not None]
        if trimming:  # Dask's default: see dask-worker.yaml
            print(
                f"warning: {len(trimming)} of the {len(threads)} Dask workers run with MALLOC_TRIM_THRESHOLD_ set, "
                "which makes MLP fits up to twice as slow; start them with DASK_CONFIG=train/dask-worker.yaml",
                file=sys.stderr,
                flush=True,
            )
        yield Cluster(address, len(threads), sum(threads.values()))


def version_differences(client: Client) -> str:
    """'package here X, worker W Y; …' for every worker whose SAME_AS_HERE versions are not ours."""
    versions = client.get_versions(packages=list(SAME_AS_HERE))
    here = versions["client"]["packages"]
    found = []
    for worker, info in sorted(versions["workers"].items()):
        theirs = info["packages"]
        found += [
            f"{name} here {here[name]}, worker {worker} {theirs[name] or 'missing'}"
            for name in SAME_AS_HERE
            if theirs[name] != here[name]
        ]
    return "; ".join(found)


def fits_on(cluster: Cluster | None) -> AbstractContextManager[object]:
    """Where the experiments' joblib calls run: the cluster's workers, or local processes (``--jobs``)."""
    return parallel_config(backend="dask") if cluster else nullcontext()
