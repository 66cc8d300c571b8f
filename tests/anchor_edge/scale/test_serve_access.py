"""The API key and the refusal to listen beyond loopback without one: as functions, and as `anchor-edge serve` exits.

Nothing here listens anywhere: a refused command must stop before Ray starts.
"""

from __future__ import annotations

import hashlib

import pytest

from anchor_edge.errors import InputError
from anchor_edge.scale.serve_access import AccessKey, exposure_problem, is_loopback, read_key

KEY = "s3cret-key-for-tests-0123456789"


def test_a_request_needs_the_exact_key_as_a_bearer_token():
    access = AccessKey.from_key(KEY)
    assert access.admits(f"Bearer {KEY}")
    assert access.admits(f"bearer {KEY}")  # the scheme is case-insensitive (RFC 9110), the key is not
    for refused in (
        None,
        "",
        KEY,
        f"Basic {KEY}",
        f"Bearer {KEY.upper()}",
        f"Bearer {KEY}x",
        f"Bearer {KEY[:-1]}",
        "Bearer ",
    ):
        assert not access.admits(refused), refused


def test_only_the_keys_digest_is_kept():
    access = AccessKey.from_key(KEY)
    assert access.digest == hashlib.sha256(KEY.encode()).digest()
    assert KEY not in repr(access) and KEY.encode() not in access.digest


def test_without_a_key_every_request_is_admitted():
    assert not AccessKey().required and AccessKey().admits(None)


def test_the_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    monkeypatch.delenv("ANCHOR_EDGE_API_KEY", raising=False)
    assert read_key("MY_KEY", named=True) == KEY
    assert read_key() is None
    with pytest.raises(InputError, match="--api-key-env names OTHER, which is not set"):
        read_key("OTHER", named=True)
    monkeypatch.setenv("MY_KEY", "  ")
    with pytest.raises(InputError, match="MY_KEY is set but empty"):
        read_key("MY_KEY")


def test_a_key_read_from_a_file_with_its_newline_admits_the_client_that_sends_it(monkeypatch):
    monkeypatch.setenv("MY_KEY", f"{KEY}\n")  # KEY=$(cat key.txt) keeps no newline, a Kubernetes secret may
    access = AccessKey.from_key(read_key("MY_KEY"))
    assert access.admits(f"Bearer {KEY}") and not access.admits(f"Bearer {KEY}x")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("2001:db8::1", False),
        ("example.org", False),
        ("128.0.0.1", False),
    ],
)
def test_loopback_is_127_0_0_0_8_and_1(host, loopback):
    assert is_loopback(host) is loopback


def test_beyond_loopback_a_key_or_insecure_is_needed():
    assert exposure_problem("127.0.0.1", has_key=False, insecure=False) is None
    assert exposure_problem("192.0.2.1", has_key=True, insecure=False) is None
    assert exposure_problem("192.0.2.1", has_key=False, insecure=True) is None
    for host in ("192.0.2.1", "0.0.0.0", "::", "example.org"):
        problem = exposure_problem(host, has_key=False, insecure=False)
        assert problem and "export ANCHOR_EDGE_API_KEY=" in problem and "--insecure" in problem, host
    assert "export MY_KEY=" in exposure_problem("0.0.0.0", has_key=False, insecure=False, variable="MY_KEY")


def test_insecure_where_it_does_not_apply_is_refused():
    assert "drop --insecure" in exposure_problem("127.0.0.1", has_key=False, insecure=True)
    assert "drop --insecure" in exposure_problem("192.0.2.1", has_key=True, insecure=True)


def test_serve_options_refuse_an_unprotected_public_host_before_ray_is_asked():
    from anchor_edge.scale.serve import ServeOptions

    with pytest.raises(InputError, match="without an API key"):
        ServeOptions(host="192.0.2.1").check_exposure()
    ServeOptions(host="192.0.2.1", access=AccessKey.from_key(KEY)).check_exposure()


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail the test if the command gets as far as starting Ray."""
    from anchor_edge.scale import cluster

    def refuse(*_, **__):
        raise AssertionError("the command started Ray before refusing")

    monkeypatch.setattr(cluster, "start", refuse)
    monkeypatch.delenv("ANCHOR_EDGE_API_KEY", raising=False)


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--host", "192.0.2.1"], {}, "export ANCHOR_EDGE_API_KEY=<a long random key>"),
        (["--host", "0.0.0.0", "--api-key-env", "MY_KEY"], {}, "--api-key-env names MY_KEY"),
        (["--host", "192.0.2.1", "--api-key-env", "MY_KEY"], {"ANCHOR_EDGE_API_KEY": KEY}, "MY_KEY, which is not set"),
        (["--insecure"], {}, "drop --insecure"),
        (["--host", "192.0.2.1", "--insecure"], {"ANCHOR_EDGE_API_KEY": KEY}, "drop --insecure"),
        ([], {"ANCHOR_EDGE_API_KEY": ""}, "ANCHOR_EDGE_API_KEY is set but empty"),
    ],
)
def test_serve_exits_2_with_one_line_before_anything_listens(
    no_cluster, monkeypatch, capsys, arguments, environment, message
):
    from anchor_edge.cli.main import main

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("anchor-edge serve: ") and message in lines[0], captured.err
    assert KEY not in captured.err
