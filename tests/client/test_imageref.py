"""Image references: one parser for the whole toolkit (client and server), Docker's grammar."""

from __future__ import annotations

import pytest

from contestkit import imageref
from contestkit.errors import UsageError
from contestkit.imageref import ImageRef

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
