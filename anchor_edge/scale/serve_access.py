"""Who may use `anchor-edge serve`: an API key from the environment, and no port open to the network without one.

The key is read from an environment variable (ANCHOR_EDGE_API_KEY by
default), never from the command line, where `ps` and shell history would
show it. Only its SHA-256 digest leaves the process that read it: the
replicas compare the digest of the presented token with it, so the key
itself is in no Ray object, log or error message. Digests of equal length
are compared with `hmac.compare_digest`, whose time does not depend on
where they differ; hashing first also hides the key's length.

A server on loopback without a key is open to this machine only, as
before. One on any other address without a key would be an open
classifier on the network, and is refused unless the user says
`--insecure` (`exposure_problem`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass

from anchor_edge.errors import InputError

DEFAULT_KEY_VARIABLE = "ANCHOR_EDGE_API_KEY"
BEARER = "bearer "


@dataclass(frozen=True)
class AccessKey:
    """The digest of the API key a request must present as `Authorization: Bearer KEY`; None: no key, all may."""

    digest: bytes | None = None

    @classmethod
    def from_key(cls, key: str | None) -> AccessKey:
        return cls(None if key is None else _digest(key.encode()))

    @property
    def required(self) -> bool:
        return self.digest is not None

    def admits(self, authorization: str | None) -> bool:
        """Whether an Authorization header value carries the key (always, when no key is set)."""
        if self.digest is None:
            return True
        if authorization is None or authorization[: len(BEARER)].lower() != BEARER:
            return False
        presented = authorization[len(BEARER) :].strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(_digest(presented), self.digest)


def read_key(variable: str = DEFAULT_KEY_VARIABLE, *, named: bool = False) -> str | None:
    """The API key in environment variable `variable`, or None where it is unset; without surrounding whitespace
    (a secret read from a file often ends in a newline, which no Authorization header can carry).

    Raises:
        InputError: the variable is set but empty or blank (a key nobody meant),
            or `named` (the user chose the variable with --api-key-env) and it is unset.
    """
    key = os.environ.get(variable)
    if key is None:
        if named:
            raise InputError(f"--api-key-env names {variable}, which is not set: export {variable}=<a long random key>")
        return None
    if not key.strip():
        raise InputError(f"{variable} is set but empty: set it to a long random key, or unset it")
    return key.strip()


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1, or the name localhost); any other name is not."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def exposure_problem(host: str, *, has_key: bool, insecure: bool, variable: str = DEFAULT_KEY_VARIABLE) -> str | None:
    """Why serving on `host` with these settings must be refused, in one line; None when it may go ahead.

    Refused: a non-loopback host without a key (unless `insecure`), and
    `insecure` where it does not apply (a loopback host, or a key is set).
    """
    if insecure and is_loopback(host):
        return f"--insecure applies only to an address beyond loopback, and {host} is loopback: drop --insecure"
    if insecure and has_key:
        return f"--insecure serves without a key, but {variable} holds one: drop --insecure, or unset {variable}"
    if not has_key and not insecure and not is_loopback(host):
        return (
            f"refusing to serve on {host} without an API key: anyone who reaches the port could use it; "
            f"export {variable}=<a long random key> (clients send 'Authorization: Bearer KEY'), "
            "or pass --insecure if an open server is what you mean"
        )
    return None


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
