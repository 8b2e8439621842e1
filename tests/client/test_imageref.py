"""Image references: one parser for the whole toolkit (client and server), Docker's grammar."""

from __future__ import annotations

import pytest

from contestkit.containers import imageref
from contestkit.containers.imageref import ImageRef
from contestkit.errors import UsageError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent", ImageRef(None, "agent")),
        ("agent:v1", ImageRef(None, "agent", "v1")),
        ("contestkit/agent:cpu", ImageRef(None, "contestkit/agent", "cpu")),
        ("127.0.0.1:5000/team/agent:v1", ImageRef("127.0.0.1:5000", "team/agent", "v1")),
        ("localhost/agent", ImageRef("localhost", "agent")),
        ("localhost:5000/agent", ImageRef("localhost:5000", "agent")),
        ("reg.example.com/t/agent@" + DIGEST, ImageRef("reg.example.com", "t/agent", None, DIGEST)),
        ("reg.example.com/t/agent:v1@" + DIGEST, ImageRef("reg.example.com", "t/agent", "v1", DIGEST)),
        ("python:3.11-slim", ImageRef(None, "python", "3.11-slim")),
    ],
)
def test_parse_splits_registry_repository_tag_and_digest(text: str, expected: ImageRef) -> None:
    ref = imageref.parse(text)
    assert ref == expected
    assert str(ref) == text  # and gives it back as written


def test_split_is_what_the_engine_takes() -> None:
    assert imageref.split("127.0.0.1:5000/team/agent:v1") == ("127.0.0.1:5000/team/agent", "v1")
    assert imageref.split("127.0.0.1:5000/team/agent") == ("127.0.0.1:5000/team/agent", "latest")
    assert imageref.split(f"h:5000/t/agent@{DIGEST}") == ("h:5000/t/agent", DIGEST)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("Agent:v1", "uppercase"),
        ("agent:-v1", "tag '-v1'"),
        ("agent:" + "x" * 129, "up to 128"),
        ("agent@sha256:xyz", "64 lowercase hex"),
        ("reg.example.com/a..b:v1", "in a row"),
        ("bad_host!.com/agent", "not a registry host"),
    ],
)
def test_a_bad_reference_is_one_sentence_with_the_rule(text: str, rule: str) -> None:
    with pytest.raises(UsageError, match=rule) as err:
        imageref.parse(text)
    assert str(err.value).endswith(".")


def test_tags_and_digests() -> None:
    assert imageref.validate_tag("v1.0_rc-2") == "v1.0_rc-2"
    for bad in (".v1", "-v1", "v 1", "x" * 129, ""):
        with pytest.raises(UsageError, match="not a valid image tag"):
            imageref.validate_tag(bad)
    assert imageref.is_digest(DIGEST) and not imageref.is_digest("sha256:abc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1", (None, "v1")),
        ("agent:v1", ("agent", "v1")),
        ("sub/agent:v1", ("sub/agent", "v1")),
        ("Agent:v1", None),
        ("agent:", None),
        ("v 1", None),
    ],
)
def test_the_form_a_job_is_submitted_with(text: str, expected: tuple[str | None, str] | None) -> None:
    """``[PATH:]TAG``: a bare word is a tag (the server's default repository), not a repository."""
    assert imageref.parse_path_and_tag(text) == expected


def test_registry_host() -> None:
    assert imageref.registry_host("reg.example.com:5000/team") == "reg.example.com:5000"
    assert imageref.registry_host("https://reg.example.com") == "reg.example.com"


# -- registry hosts, IPv6 and digests: the helpers every module splits references with -----------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("registry.example.com", ("registry.example.com", None)),
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("[::1]:5000", ("[::1]", 5000)),
        ("[fd00::12]", ("[fd00::12]", None)),
    ],
)
def test_split_host_port_keeps_ipv6_brackets(host: str, expected: tuple[str, int | None]) -> None:
    assert imageref.split_host_port(host) == expected


def test_a_bad_port_or_an_unclosed_ipv6_address_is_one_sentence() -> None:
    with pytest.raises(UsageError, match="port '99999' must be a number from 1 to 65535"):
        imageref.split_host_port("h:99999")
    with pytest.raises(UsageError, match="an IPv6 address goes in brackets"):
        imageref.split_host_port("[::1:5000")


def test_ipv6_registries_are_registries() -> None:
    ref = imageref.parse(f"[::1]:5000/team/agent:v1@{DIGEST}")
    assert ref == ImageRef("[::1]:5000", "team/agent", "v1", DIGEST)
    assert imageref.validate_registry("[fd00::12]:5000/team") == "[fd00::12]:5000/team"
    assert imageref.split_registry("[::1]:5000/team/sub") == ("[::1]:5000", "team/sub")
    assert imageref.registry_host("https://[::1]:5000/team") == "[::1]:5000"
    with pytest.raises(UsageError, match="is not a host name"):
        imageref.validate_registry("[not-v6]:5000")


def test_pinned_drops_the_tag_and_keeps_the_port() -> None:
    """The server ran ``image.rsplit(':', 1)[0] + '@' + digest``: a reference without a tag lost its port."""
    assert str(imageref.parse("127.0.0.1:5000/team/agent").pinned(DIGEST)) == f"127.0.0.1:5000/team/agent@{DIGEST}"
    assert str(imageref.parse("[::1]:5000/team/agent:v1").pinned(DIGEST)) == f"[::1]:5000/team/agent@{DIGEST}"
    with pytest.raises(UsageError, match="is not a digest"):
        imageref.parse("agent").pinned("sha256:short")


def test_registry_credentials_split_host_and_namespace_with_imageref() -> None:
    from contestkit.client.credentials import RegistryCredentials

    creds = RegistryCredentials("[::1]:5000/team-rocket", "u", "p")
    assert (creds.host, creds.namespace) == ("[::1]:5000", "team-rocket")
    assert (RegistryCredentials("h:5000", "u", "p").namespace) == ""


def test_the_server_reads_ipv6_registries_as_imageref_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from contestkit.server.config import ServerConfig, validate

    config = ServerConfig(registry="[::1]:5000", data_dir=tmp_path)
    validate(config)
    assert config.public_url() == "http://[::1]:8000"
    assert ServerConfig(registry="[fd00::12]", data_dir=tmp_path).public_url() == "http://[fd00::12]:8000"
    with pytest.raises(UsageError, match="must be HOST:PORT"):
        validate(ServerConfig(registry="[::1]:5000/team", data_dir=tmp_path))
