"""`python -m train --dask`: the same results on a Dask cluster as locally, and one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from dask.distributed import LocalCluster

from testkit.live import REPO
from tests.conftest import run_train
from train.cluster import SAME_AS_HERE, version_differences

SMALL = ("--actors", "1-3", "--quick", "--repeats", "2", "--jobs", "2")


@pytest.fixture
def short_connect_timeout(monkeypatch):
    """Dask waits 30 s for a scheduler by default; the subprocesses inherit this environment."""
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")


def train(data, out, cache, *extra):
    args = ("--data", str(data), *SMALL, "--out", str(out / "models"), "--report", str(out / "report"))
    result = run_train(*args, "--cache", str(cache), *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads((out / "report" / "metrics.json").read_text())


@pytest.fixture
def two_workers():
    """A LocalCluster of two worker processes of one thread, its environment kept from the training subprocess.

    Dask's nanny sets OMP/OPENBLAS/MKL_NUM_THREADS=1 in this process's environment to spawn its workers;
    inherited, it would make the run's local fits (the final model) use one BLAS thread instead of all
    cores, which changes their last bits: a difference of the test's making, not of --dask.
    """
    before = dict(os.environ)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as c:
        os.environ.clear()
        os.environ.update(before)
        yield c


@pytest.mark.slow
def test_a_local_cluster_gives_the_local_results(ravdess, tmp_path, two_workers):
    cache = tmp_path / "cache"
    local, local_metrics = train(ravdess, tmp_path / "local", cache)
    address = two_workers.scheduler_address
    remote, remote_metrics = train(ravdess, tmp_path / "dask", cache, "--dask", address)

    assert remote.stdout == local.stdout  # the table of every model's scores
    assert remote_metrics["grid_search"] == local_metrics["grid_search"]  # best params, every candidate's score
    assert remote_metrics["models"] == local_metrics["models"]  # every repeat's accuracy, both protocols
    assert remote_metrics["bundle_sha256"] == local_metrics["bundle_sha256"]
    assert remote_metrics["dask"] == {"scheduler": address, "workers": 2, "threads": 2}
    assert "dask" not in local_metrics
    assert "warning: 2 of the 2 Dask workers run with MALLOC_TRIM_THRESHOLD_ set" in remote.stderr  # Dask's default
    assert "MALLOC_TRIM_THRESHOLD_" not in local.stderr
    assert f"model fits on the Dask cluster at {address}" in (tmp_path / "dask" / "report" / "report.md").read_text()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line(tmp_path, short_connect_timeout):
    address = f"tcp://127.0.0.1:{closed_port()}"
    result = run_train("--data", str(tmp_path), "--dask", address, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and f"cannot reach the Dask scheduler at {address}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_scheduler_without_workers_is_one_line(tmp_path, short_connect_timeout):
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        result = run_train("--data", str(tmp_path), "--dask", address, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"python -m train: the Dask scheduler at {address} has no workers (waited 1s)\n"


def test_without_dask_installed_the_flag_names_the_extra(tmp_path):
    blocked = "import sys; sys.modules['distributed'] = None; from train.__main__ import main; sys.exit(main())"
    args = ["--data", str(tmp_path), "--dask", "tcp://127.0.0.1:8786"]
    result = subprocess.run(
        [sys.executable, "-c", blocked, *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "pip install -e '.[dask]'" in result.stderr
    assert "Traceback" not in result.stderr


class VersionsOf:
    """A client whose workers report the given package versions (ours: the client's)."""

    def __init__(self, here: dict[str, str], workers: dict[str, dict[str, str | None]]):
        self.versions = {
            "client": {"packages": here},
            "workers": {name: {"packages": packages} for name, packages in workers.items()},
        }

    def get_versions(self, packages):
        assert list(packages) == list(SAME_AS_HERE)
        return self.versions


def test_workers_with_other_library_versions_are_named():
    here = dict.fromkeys(SAME_AS_HERE, "1.0")
    other = {**here, "scikit-learn": "0.9", "ser-stream": None}
    message = version_differences(VersionsOf(here, {"tcp://a:1": here, "tcp://b:2": other}))
    assert message == "scikit-learn here 1.0, worker tcp://b:2 0.9; ser-stream here 1.0, worker tcp://b:2 missing"
    assert version_differences(VersionsOf(here, {"tcp://a:1": here})) == ""
