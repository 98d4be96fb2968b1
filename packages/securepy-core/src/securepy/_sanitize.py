"""Scrubbing host details and secrets out of error text that may reach a model.

Used when ``sanitize_errors=True`` (and by the adapters, which talk to models). What goes, in
this order:

- host stack frames: each ``File "/..."`` traceback entry (with its source and caret lines)
  becomes one ``[host frames hidden]`` line per run;
- secrets: a URL's user and password, the values of query parameters and ``name=value`` pairs
  whose name says key, token, secret, password, signature or credential, ``Authorization``
  headers and bearer tokens, private key blocks, and keys in well-known formats (OpenAI and
  Anthropic ``sk-...``, AWS ``AKIA...``, GitHub ``ghp_``/``gho_``/``github_pat_``..., Slack
  ``xox?-``, Google ``AIza...``, Stripe ``sk_live_``, JWTs): ``<redacted>``;
- private and loopback IP addresses (IPv4 and IPv6), the host's own name and names under
  internal domains (``.internal``, ``.local``, ``.lan``, ``.corp``, ...): ``<private-ip>``,
  ``<host>``;
- home directories, then any other absolute path, Unix or Windows: ``/home/alice/app/db.py``
  reads ``<path>/db.py`` (the last component stays: it usually tells the model what failed);
- the host's user names (login name, passwd entry, ``$USER``, ``$LOGNAME``): ``<user>``;
- process ids: numbers after "pid", and the host's own pid and parent pid anywhere: ``<pid>``;
- memory addresses (``0x7f3a...``): ``<address>``.

Cost: every pattern is linear in the text (no nested or adjacent quantifiers over the same
characters, so nothing backtracks), and the text is bounded before any pattern runs: a longer
text keeps its head and tail, cut at word boundaries so no half secret survives the cut. The
result is at most ``MAX_CHARS`` (500) characters, with a marker where text was cut.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import re
import socket

__all__ = ["MAX_CHARS", "sanitize_text"]

MAX_CHARS = 500
# What the patterns see at most: a head and a tail of the text.
_SCAN_HEAD = 6000
_SCAN_TAIL = 2000

_HOST_FRAME = re.compile(r'^[ \t]*File "(?:/|~|[A-Za-z]:\\)[^"\n]*", line \d+')
_CARETS = re.compile(r"^[ \t]*[\^~]+[ \t]*$")
_PATH_CHARS = r"[\w.+\-@%=,]"
# Not after a word character, ">" (our own placeholders), ":" or "/" (URLs) or "." (relative).
_ABSOLUTE_PATH = re.compile(rf"(?<![\w>:/.~])(?:/{_PATH_CHARS}+)+/?")
_TILDE_PATH = re.compile(rf"(?<![\w>])~{_PATH_CHARS}*(?:/{_PATH_CHARS}+)+/?")
_WINDOWS_PATH = re.compile(
    r"(?<![\w])(?:[A-Za-z]:|\\\\[\w.$-]+)[\\/](?:[^\\/\s\"'<>|:*?]+[\\/])*"
    r"[^\\/\s\"'<>|:*?]*"
)
_QUOTED_PATH = re.compile(r"""(['"])(/[^'"\n]*)\1""")
_PID_AFTER_WORD = re.compile(r"(?i)\b(pid|ppid)([ \t]*(?:[:=#][ \t]*)?)\d+\b")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")

_REDACTED = "<redacted>"
# A name is secret if one of its parts (split at _ . -) is one of these words, or its last part
# ends with one of _SECRET_ENDINGS (apiKey, authtoken): "KeyError" and "token_count" are not.
_SECRET_WORDS = frozenset(
    {
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "sig",
        "signature",
        "credential",
        "credentials",
        "auth",
        "cookie",
        "sessionid",
        "apikey",
    }
)
_SECRET_ENDINGS = ("key", "token", "secret", "password", "passwd")
_NAME_PARTS = re.compile(r"[_.\-]")
# Each: (pattern, replacement). Prefixes keep what the text is about, values go.
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[^-]*(?:-----END [A-Z ]{0,40}"
            r"PRIVATE KEY-----)?"
        ),
        "<redacted private key>",
    ),
    # scheme://user:password@host
    (
        re.compile(
            r"(?i)\b([a-z][a-z0-9+.\-]{1,20}://)[^/\s@:'\"<>]{1,256}(?::[^/\s@'\"<>]"
            r"{0,256})?@"
        ),
        rf"\1{_REDACTED}@",
    ),
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?)(?:(?:bearer|basic|"
            r"token|digest|negotiate|apikey)[ \t]+)?[^\s\"',;]+"
        ),
        rf"\1{_REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|token)([ \t]+)[A-Za-z0-9._~+/\-]{8,}=*"), rf"\1\2{_REDACTED}"),
    (re.compile(r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"), _REDACTED),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"), _REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), _REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), _REDACTED),
    (re.compile(r"\bxox[abposrce]-[A-Za-z0-9\-]{8,}"), _REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), _REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"), _REDACTED),
)
# name=value (query strings, config dumps, keyword reprs) whose name says secret.
_NAMED_VALUE = re.compile(
    r"(?i)([\w.\-]{1,64})([\"']?[ \t]*=[ \t]*|[\"']?:[ \t]+|[\"']:)(['\"]?)([^\s&#'\"<>,;)?]+)"
)
_PRIVATE_IPV4 = re.compile(
    r"(?<![\w.])(?:10(?:\.\d{1,3}){3}|127(?:\.\d{1,3}){3}|192\.168(?:\.\d{1,3}){2}|"
    r"172\.(?:1[6-9]|2\d|3[01])(?:\.\d{1,3}){2}|169\.254(?:\.\d{1,3}){2}|"
    r"100\.(?:6[4-9]|[7-9]\d|1[01]\d|12[0-7])(?:\.\d{1,3}){2}|0\.0\.0\.0)(?![\w.]*\d)"
)
_PRIVATE_IPV6 = re.compile(
    r"(?i)(?<![\w:])(?:f[cd][0-9a-f]{2}|fe[89ab][0-9a-f]):[0-9a-f:]{1,40}"
    r"(?:%[\w.\-]{1,20})?|(?<![\w:])::1(?![\w:])"
)
_INTERNAL_HOST = re.compile(
    r"(?i)(?<![\w.\-])(?:[a-z0-9\-]{1,63}\.){1,8}(?:internal|local|localdomain|lan|corp|home|"
    r"intranet|private|priv|intra)(?![\w\-])|(?<![\w.\-])localhost(?![\w\-])"
)


def sanitize_text(text: str) -> str:
    """``text`` with host details and secrets replaced, at most ``MAX_CHARS`` long.

    Args:
        text: an error message or traceback.

    Returns:
        The text with each host detail or secret replaced by a placeholder (``<redacted>``,
        ``<path>``, ``<user>``, ``<host>``, ``<private-ip>``, ``<pid>``, ``<address>``), cut
        to ``MAX_CHARS`` characters (head and tail, with a marker). Applying it twice changes
        nothing more.
    """
    if not text:
        return text
    text = _bound(text, _SCAN_HEAD, _SCAN_TAIL)
    text = _hide_host_frames(text)
    text = _redact_secrets(text)
    text = _PRIVATE_IPV4.sub("<private-ip>", text)
    text = _PRIVATE_IPV6.sub("<private-ip>", text)
    for name in _host_names():
        text = re.sub(rf"(?i)(?<![\w.\-<]){re.escape(name)}(?![\w\-])", "<host>", text)
    text = _INTERNAL_HOST.sub("<host>", text)
    text = _replace_paths(text)
    for name in _user_names():
        text = re.sub(rf"(?i)(?<![\w<]){re.escape(name)}(?![\w>])", "<user>", text)
    text = _PID_AFTER_WORD.sub(r"\1\2<pid>", text)
    for pid in {os.getpid(), os.getppid()}:
        text = re.sub(rf"(?<![\w<]){pid}(?!\w)", "<pid>", text)
    text = _ADDRESS.sub("<address>", text)
    return _bound(text, MAX_CHARS * 3 // 5, MAX_CHARS * 2 // 5 - 40)


def _bound(text: str, head: int, tail: int) -> str:
    """Head and tail of ``text`` with a marker between, each cut at a word boundary so a
    secret split by the cut cannot survive as a fragment the patterns no longer recognise."""
    if len(text) <= head + tail + 40:
        return text
    first = text[:head]
    last = text[-tail:]
    space = max(first.rfind(" "), first.rfind("\n"))
    first = first[: space + 1] if space > head // 2 else first[: head // 2]
    breaks = [i for i in (last.find(" "), last.find("\n")) if i >= 0]
    cut = min(breaks) if breaks else -1
    last = last[cut:] if 0 <= cut < tail // 2 else ""
    return f"{first}[...{len(text) - len(first) - len(last)} characters cut...]{last}"


def _redact_secrets(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _NAMED_VALUE.sub(_redact_named_value, text)


def _redact_named_value(match: re.Match[str]) -> str:
    parts = _NAME_PARTS.split(match.group(1).casefold())
    value = match.group(4)
    secret = parts[-1].endswith(_SECRET_ENDINGS) or not _SECRET_WORDS.isdisjoint(parts)
    if value.startswith("<") or not secret:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{match.group(3)}{_REDACTED}"


def _hide_host_frames(text: str) -> str:
    kept: list[str] = []
    hiding = False
    for line in text.splitlines(keepends=True):
        if _HOST_FRAME.match(line):
            if not hiding:
                indent = line[: len(line) - len(line.lstrip())]
                kept.append(f"{indent}[host frames hidden]\n")
            hiding = True
            continue
        if hiding and _is_frame_detail(line):
            continue  # the source line and carets shown under a hidden frame
        hiding = False
        kept.append(line)
    return "".join(kept)


def _is_frame_detail(line: str) -> bool:
    # Under 'File "...", line N' CPython prints the source line indented by four spaces and,
    # on 3.11+, a caret line; anything else (the next 'File', the exception) ends the frame.
    stripped = line.lstrip()
    is_source = line.startswith("    ") and not stripped.startswith("File ")
    return is_source or bool(_CARETS.match(line))


def _replace_paths(text: str) -> str:
    # Homes and quoted paths first: they may hold characters (spaces) the general pattern
    # does not follow.
    for home in _home_directories():
        text = re.sub(rf"{re.escape(home)}(?:/{_PATH_CHARS}+)*/?(?![\w.+\-@])", _shorten_path, text)
    text = _QUOTED_PATH.sub(_shorten_quoted_path, text)
    text = _TILDE_PATH.sub(_shorten_path, text)
    text = _WINDOWS_PATH.sub(_shorten_windows_path, text)
    return _ABSOLUTE_PATH.sub(_shorten_path, text)


def _shorten_path(match: re.Match[str]) -> str:
    return _shorten(match.group(0))


def _shorten_windows_path(match: re.Match[str]) -> str:
    return _shorten(match.group(0).replace("\\", "/"))


def _shorten_quoted_path(match: re.Match[str]) -> str:
    quote = match.group(1)
    return f"{quote}{_shorten(match.group(2))}{quote}"


def _shorten(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if (
        not last
        or last.endswith(":")
        or any(last.casefold() == name.casefold() for name in _user_names())
    ):
        return "<path>"
    return f"<path>/{last}"


@functools.cache
def _home_directories() -> tuple[str, ...]:
    found = {os.path.expanduser("~"), os.environ.get("HOME", "")}
    try:
        import pwd

        found.add(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    # Longest first, so /home/alice/work is not half-replaced by /home/alice.
    return tuple(
        sorted((h.rstrip("/") for h in found if len(h.rstrip("/")) > 1), key=len, reverse=True)
    )


@functools.cache
def _host_names() -> tuple[str, ...]:
    # gethostname only: getfqdn asks DNS, which may hang.
    found = {socket.gethostname()}
    # A short name such as "ai" or "box" would turn ordinary words into <host>.
    return tuple(
        sorted((n for n in found if len(n) >= 4 and n != "localhost"), key=len, reverse=True)
    )


@functools.cache
def _user_names() -> tuple[str, ...]:
    found = {os.environ.get("USER", ""), os.environ.get("LOGNAME", "")}
    with contextlib.suppress(OSError, KeyError):
        found.add(getpass.getuser())
    try:
        import pwd

        found.add(pwd.getpwuid(os.getuid()).pw_name)
    except (ImportError, KeyError):
        pass
    # One-letter names would turn every "a" into <user>; such a name says little anyway.
    return tuple(sorted((name for name in found if len(name) >= 2), key=len, reverse=True))
