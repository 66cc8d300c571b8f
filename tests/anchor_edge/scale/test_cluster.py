"""A local Ray cluster stays on loopback: the address checks by hand, and Ray started for real in a fresh process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from anchor_edge.errors import ClusterError
from anchor_edge.scale.cluster import _host, check_loopback

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install -e '.[scale]'"
)


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("127.0.0.1:6379", "127.0.0.1"),
        ("10.1.2.3:40000", "10.1.2.3"),
        ("[::1]:6379", "::1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_of_a_control_plane_address(address, host):
    assert _host(address) == host


def test_only_addresses_in_127_0_0_0_8_pass():
    check_loopback(("127.0.0.1", "127.0.0.2", "127.255.255.254"))
    for outside in ("192.0.2.2", "10.0.0.1", "0.0.0.0", "::1", "vm"):
        with pytest.raises(ClusterError, match="outside 127.0.0.0/8"):
            check_loopback(("127.0.0.1", outside))


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


@needs_ray
@pytest.mark.timeout(150)
def test_a_fresh_local_cluster_reports_only_loopback_addresses():
    probe = run_python(
        "import os; os.environ.pop('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', None)\n"
        "from anchor_edge.scale import cluster\n"
        "c = cluster.start(num_cpus=1)\n"
        "import ray\n"
        "print('NODES', [n['NodeManagerAddress'] for n in ray.nodes()], ray.get_runtime_context().gcs_address)\n"
        "cluster.stop(c)\n"
    )
    assert probe.returncode == 0, probe.stderr
    line = next(line for line in probe.stdout.splitlines() if line.startswith("NODES"))
    assert line == f"NODES ['127.0.0.1'] 127.0.0.1:{line.rsplit(':', 1)[1]}"


@needs_ray
def test_ray_imported_first_is_refused_before_a_cluster_starts():
    probe = run_python(
        "import os; os.environ.pop('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', None)\n"
        "import ray\n"
        "from anchor_edge.scale import cluster\n"
        "try:\n    cluster.start()\nexcept cluster.ClusterError as e:\n    print('REFUSED', e)\n"
        "print('INITIALIZED', ray.is_initialized())\n"
    )
    assert "REFUSED ray was imported before" in probe.stdout, probe.stderr
    assert "INITIALIZED False" in probe.stdout


def test_a_signal_taken_by_another_thread_still_ends_the_wait():
    # Ray's threads can receive the process's SIGINT; a long sleep in the main thread never woke up for it.
    script = (
        "import signal, threading, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # even where the test runner ignores SIGINT
        "from anchor_edge.cli.serve import wait_for_interrupt\n"
        "def send():\n"
        "    time.sleep(0.3)\n"
        "    signal.pthread_kill(threading.get_ident(), signal.SIGINT)\n"
        "threading.Thread(target=send).start()\n"
        "try:\n"
        "    wait_for_interrupt()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "interrupted", done.stderr
