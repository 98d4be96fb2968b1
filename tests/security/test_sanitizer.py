"""The sanitizer cannot be made slow, and it scrubs secrets from text that reaches a model.

Attack: hostile error text (from the child, or from a host tool's exception) crafted to make
the scrubber's patterns backtrack, or carrying a host secret. Control: ordinary text keeps its
meaning, and a text without secrets is unchanged.
"""

from __future__ import annotations

import time

import pytest
import securepy
from securepy._sanitize import MAX_CHARS, sanitize_text

SECRETS = {
    "url-userinfo": (
        "GET https://alice:hunter2pass@api.example.com/v1 failed",
        "GET https://<redacted>@api.example.com/v1 failed",
        "hunter2pass",
    ),
    "query-api-key": (
        "403 for https://api.example.com/v1/x?q=1&api_key=AbC123sEcReT&n=2",
        None,
        "AbC123sEcReT",
    ),
    "query-token": ("https://h.example.com/p?access_token=tok_9f8e7d6c5b", None, "tok_9f8e7d6c5b"),
    "query-sig": (
        "https://s3.example.com/o?X-Amz-Signature=deadbeefcafe1234&X-Amz-Date=1",
        None,
        "deadbeefcafe1234",
    ),
    "query-password": ("db?password=letmein99&user=x", None, "letmein99"),
    "authorization": (
        "headers: {'Authorization': 'Bearer abcdefghijklmnop123'}",
        None,
        "abcdefghijklmnop123",
    ),
    "bearer": ("sent bearer eyZZabcdefgh12345678 upstream", None, "eyZZabcdefgh12345678"),
    "openai": (
        "Incorrect API key provided: sk-proj-AbCdEf0123456789xyzXYZ.",
        None,
        "sk-proj-AbCdEf0123456789xyzXYZ",
    ),
    "anthropic": (
        "x-api-key sk-ant-api03-AbCdEf0123456789-xyz_XYZ invalid",
        None,
        "sk-ant-api03-AbCdEf0123456789-xyz_XYZ",
    ),
    "aws": (
        "The AWS Access Key Id AKIAIOSFODNN7EXAMPLE does not exist",
        None,
        "AKIAIOSFODNN7EXAMPLE",
    ),
    "aws-secret": (
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    "github": (
        "token ghp_1234567890abcdefghijABCDEFGHIJ123456 revoked",
        None,
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    ),
    "github-pat": (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        None,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
    ),
    "slack": (
        "slack said invalid_auth for xoxb-1234567890-abcdefghij",
        None,
        "xoxb-1234567890-abcdefghij",
    ),
    "jwt": (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU expired",
        None,
        "eyJzdWIiOiIxMjM0In0",
    ),
    "private-key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAabc\n-----END RSA PRIVATE KEY-----",
        None,
        "MIIEowIBAAKCAQEAabc",
    ),
    "private-ipv4": (
        "connect to 10.1.2.3:5432 and 192.168.0.7 and 172.20.1.1 refused",
        None,
        "10.1.2.3",
    ),
    "private-ipv6": ("fd12:3456:789a::1 unreachable", None, "fd12:3456"),
    "internal-host": ("could not resolve billing-db.prod.internal", None, "billing-db"),
    "windows-path": (r"FileNotFoundError: C:\Users\alice\secrets\key.txt", None, "alice"),
    "unc-path": (r"open \\fileserver\share\payroll.xlsx", None, "fileserver"),
    "tilde-path": ("see ~alice/.aws/credentials", None, "alice"),
}


@pytest.mark.parametrize("name", list(SECRETS))
def test_secrets_and_host_details_are_scrubbed(name: str) -> None:
    text, expected, secret = SECRETS[name]
    cleaned = sanitize_text(text)
    assert secret not in cleaned, cleaned
    if expected is not None:
        assert cleaned == expected
    assert sanitize_text(cleaned) == cleaned  # idempotent


@pytest.mark.parametrize(
    ("text"),
    [
        "ValueError: invalid literal for int() with base 10: 'abc'",
        "KeyError: 'token_count'",
        "see https://docs.python.org/3/library/re.html?highlight=sub#re.sub",
        "public server 8.8.8.8 answered; version 10.2.3 installed",
        "the key is missing from the mapping",
        "ZeroDivisionError: division by zero",
    ],
    ids=["int-parse", "key-named-token", "public-url", "public-ip-and-version", "prose", "zero"],
)
def test_control_ordinary_text_is_unchanged(text: str) -> None:
    assert sanitize_text(text) == text


HOSTILE = {
    "pid-then-spaces": "pid" + " " * 200_000 + "x",
    "many-pids": "pid " * 100_000,
    "quotes-and-slashes": "'/" * 100_000,
    "url-without-at": "http://" + "a" * 200_000,
    "many-schemes": "a://" * 100_000,
    "authorization-run": "Authorization: " * 50_000,
    "name-equals": "token=" * 100_000,
    "carets": "  ^" * 100_000 + "x",
    "frames": 'File "/x' * 100_000,
    "windows": "C:\\" + "a\\" * 100_000,
    "hosts": "a." * 100_000 + "internal",
    "ipv6": "fd00:" * 100_000,
    "jwt-like": "eyJ" + "a" * 100_000 + "." * 100_000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_cannot_make_the_sanitizer_slow(name: str) -> None:
    text = HOSTILE[name] * 20  # megabytes
    started = time.perf_counter()
    cleaned = sanitize_text(text)
    assert time.perf_counter() - started < 0.5
    assert len(cleaned) <= MAX_CHARS


def test_long_text_keeps_head_and_tail_within_the_cap() -> None:
    text = "Traceback (most recent call last):\n" + "  line\n" * 10_000 + "ValueError: bad"
    cleaned = sanitize_text(text)
    assert len(cleaned) <= MAX_CHARS
    assert cleaned.startswith("Traceback (most recent call last):")
    assert cleaned.endswith("ValueError: bad")
    assert "characters cut..." in cleaned
    short = "ValueError: bad"
    assert sanitize_text(short) == short  # control: short text is not cut


def test_a_secret_split_by_the_cut_leaves_no_fragment() -> None:
    secret = "sk-ant-api03-" + "Q" * 40
    text = "x " * 2990 + secret + " y" * 5000
    assert "QQQQ" not in sanitize_text(text)


def test_a_tool_error_with_an_api_key_in_its_url_is_scrubbed_before_the_code_sees_it() -> None:
    def fetch() -> None:
        """Fetch a report."""
        raise ConnectionError("GET https://api.example.com/r?api_key=S3CR3T-KEY-123 timed out")

    for sanitize, expect_secret in ((True, False), (False, True)):  # control: off keeps it
        with securepy.Session([fetch], sandbox=False, sanitize_errors=sanitize) as session:
            seen = session.execute(
                "try:\n    fetch()\nexcept ToolError as e:\n    seen = str(e)\nseen"
            ).value
        assert ("S3CR3T-KEY-123" in seen) is expect_secret, seen
