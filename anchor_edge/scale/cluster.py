"""Start a local Ray cluster that listens and talks on loopback only, or join an existing cluster.

Ray on Linux replaces a loopback node address with the machine's own
reachable address (it expects other nodes to join), so `_node_ip_address=
"127.0.0.1"` alone still puts the node on the network. Ray's single-machine
mode keeps it on loopback, and is chosen by an environment variable read
when Ray is imported (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`). `start()` sets
it for a local cluster, pins the node address, and then checks every address
Ray reports against 127.0.0.0/8 before anything is sent: a local cluster that
is not on loopback is shut down and refused.

Joining a running cluster (`address="auto"` or "HOST:PORT") keeps that
cluster's addresses: a real multi-node cluster lives on the user's network.
No address means a new local cluster even where RAY_ADDRESS is set (Ray
sets it for the subprocesses of a driver, which would otherwise join the
parent's cluster unasked).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from anchor_edge.errors import ClusterError

log = logging.getLogger("anchor_edge")

#: Ray's switch between multi-node (1, Linux's default) and single-machine mode (0), read at import.
SINGLE_MACHINE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
INSTALL_HINT = "pip install 'anchor-edge[scale]'"


@dataclass(frozen=True)
class Cluster:
    """The cluster this process is connected to.

    started_here: `start` started it, so `stop` shuts it down (a cluster that
    was joined, or already connected, is left running); addresses: every node
    and control-plane address Ray reports; cpus, gpus: the cluster's totals.
    """

    started_here: bool
    addresses: tuple[str, ...]
    cpus: float
    gpus: float


def start(address: str | None = None, *, num_cpus: int | None = None) -> Cluster:
    """Connect this process to Ray: a new local cluster on loopback (address None) or an existing one.

    Args:
        address: None starts a local cluster on 127.0.0.1 (in a process already
            connected to Ray: checks that cluster is on loopback); "auto" joins one
            started on this machine with `ray start`; "HOST:PORT" joins a
            cluster's head node.
        num_cpus: CPUs a local cluster may use (default: all cores).

    Raises:
        ClusterError: Ray is not installed, cannot start or join, or a local
            cluster reports an address outside 127.0.0.0/8.
    """
    local = address is None
    already_connected = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if local and not already_connected:
        _choose_single_machine_mode()
    ray = import_ray()
    started_here = not already_connected
    if started_here:
        options: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
        if local:
            options.update(_node_ip_address="127.0.0.1", num_cpus=num_cpus)
        try:
            ray.init(address="local" if local else address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(f"Ray could not {'start' if local else f'join {address!r}'}: {error}") from error
    cluster = describe(started_here=started_here)
    if local:
        try:
            check_loopback(cluster.addresses)
        except ClusterError:
            if started_here:
                ray.shutdown()
            raise
    log.info("Ray cluster: %s CPUs, %s GPUs at %s", cluster.cpus, cluster.gpus, ", ".join(cluster.addresses))
    return cluster


def describe(*, started_here: bool) -> Cluster:
    """The connected cluster's addresses and resources."""
    ray = import_ray()
    addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}
    addresses.add(_host(ray.get_runtime_context().gcs_address))
    resources = ray.cluster_resources()
    return Cluster(
        started_here, tuple(sorted(addresses)), float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    )


def check_loopback(addresses: tuple[str, ...]) -> None:
    """Raise ClusterError unless every address is in 127.0.0.0/8."""
    outside = [a for a in addresses if not _is_loopback(a)]
    if outside:
        raise ClusterError(
            f"the local Ray cluster reports address(es) {outside} outside 127.0.0.0/8 and is refused; "
            f"set {SINGLE_MACHINE_SWITCH}=0 in the environment, or call start() before anything imports ray"
        )


def stop(cluster: Cluster) -> None:
    """Shut Ray down if `start` started the cluster; leave a joined or already connected one running."""
    ray = import_ray()
    if cluster.started_here and ray.is_initialized():
        ray.shutdown()


def import_ray() -> ModuleType:
    """The ray module, or a ClusterError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ClusterError(f"this needs Ray: {INSTALL_HINT}") from error
    return ray


def _choose_single_machine_mode() -> None:
    """Set Ray's single-machine switch before ray is imported; refuse if ray was imported with multi-node mode."""
    if os.environ.get(SINGLE_MACHINE_SWITCH) == "0":
        return
    if "ray" in sys.modules:
        raise ClusterError(
            f"ray was imported before anchor-edge could keep a local cluster on loopback: set "
            f"{SINGLE_MACHINE_SWITCH}=0 in the environment, or call start() before anything imports ray"
        )
    os.environ[SINGLE_MACHINE_SWITCH] = "0"


def _host(address: str) -> str:
    """'1.2.3.4:6379' -> '1.2.3.4'; '[::1]:6379' -> '::1'."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host.strip("[]")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in LOOPBACK
    except ValueError:
        return False
