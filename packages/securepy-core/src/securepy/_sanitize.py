"""Scrubbing host details out of error text that may reach a model (``sanitize_errors=True``).

What goes, in this order:

- host stack frames: each ``File "/..."`` traceback entry (with its source and caret lines)
  becomes one ``[host frames hidden]`` line per run;
- home directories, then any other absolute path: ``/home/alice/app/db.py`` reads
  ``<path>/db.py`` (the last component stays, since it usually tells the model what failed);
- the host's user names (login name, passwd entry, ``$USER``, ``$LOGNAME``): ``<user>``;
- process ids: numbers after "pid", and the host's own pid and parent pid anywhere: ``<pid>``;
- memory addresses (``0x7f3a...``): ``<address>``.

The text stays readable (``ValueError: bad row in <path>/data.csv``) but names nothing on the host.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import re

__all__ = ["sanitize_text"]

_HOST_FRAME = re.compile(r'^\s*File "(?:/|~)[^"]*", line \d+')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
_PATH_CHARS = r"[\w.+\-@%=,]"
# Not after a word character, ">" (our own placeholders), ":" or "/" (URLs) or "." (relative).
_ABSOLUTE_PATH = re.compile(rf"(?<![\w>:/.~])(?:/{_PATH_CHARS}+)+/?")
_QUOTED_PATH = re.compile(r"""(['"])(/[^'"\n]*)\1""")
_PID_AFTER_WORD = re.compile(r"(?i)\b(pid|ppid)(\s*[:=#]?\s*)\d+\b")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def sanitize_text(text: str) -> str:
    """``text`` with host stack frames, paths, user names, pids and addresses replaced.

    Args:
        text: an error message or traceback.

    Returns:
        The text with each host detail replaced by a placeholder (``<path>``, ``<user>``,
        ``<pid>``, ``<address>``). Applying it twice changes nothing more.
    """
    if not text:
        return text
    text = _hide_host_frames(text)
    text = _replace_paths(text)
    for name in _user_names():
        text = re.sub(rf"(?i)(?<![\w<]){re.escape(name)}(?![\w>])", "<user>", text)
    text = _PID_AFTER_WORD.sub(r"\1\2<pid>", text)
    for pid in {os.getpid(), os.getppid()}:
        text = re.sub(rf"(?<![\w<]){pid}(?!\w)", "<pid>", text)
    return _ADDRESS.sub("<address>", text)


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
        text = re.sub(rf"{re.escape(home)}(?:/{_PATH_CHARS}+)*/?(?![\w.+\-@])",
                      _shorten_path, text)
    text = _QUOTED_PATH.sub(_shorten_quoted_path, text)
    return _ABSOLUTE_PATH.sub(_shorten_path, text)


def _shorten_path(match: re.Match[str]) -> str:
    return _shorten(match.group(0))


def _shorten_quoted_path(match: re.Match[str]) -> str:
    quote = match.group(1)
    return f"{quote}{_shorten(match.group(2))}{quote}"


def _shorten(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if not last or any(last.casefold() == name.casefold() for name in _user_names()):
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
    return tuple(sorted((h.rstrip("/") for h in found if len(h.rstrip("/")) > 1),
                        key=len, reverse=True))


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
