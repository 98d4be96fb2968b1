"""Rich outputs: ``display(obj)`` and matplotlib figures, sent as MIME bundles. Stdlib only.

Each display output is one ``display`` frame holding a MIME bundle as Jupyter's display data
has it: ``{mime type: text}``, with binary types (PNG, JPEG, GIF) as base64 text and
``application/json`` as JSON text. Objects describe themselves as IPython's formatters expect
(``_repr_mimebundle_``, ``_repr_png_``, ``_repr_html_``, ...); a matplotlib figure is rendered
to PNG. Figures still open at the end of an execute are shown and closed, as Jupyter's inline
backend does, and ``plt.show()`` shows them at once (inline_backend.py is the backend that
makes it so; the worker names it in ``MPLBACKEND``).

The host treats every bundle as hostile (types allowlisted, sizes and counts capped, base64
checked): the caps here only spare an honest worker from sending what would be dropped.
"""

from __future__ import annotations

import binascii
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start; the worker needs it only for mypy
    from typing import Any

__all__ = [
    "BACKEND",
    "MIME_TYPES",
    "Display",
    "configure_matplotlib",
    "current",
    "warm_matplotlib",
]

# In the order a reader prefers them (richest first); the host accepts only these.
MIME_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
    "text/html",
    "text/markdown",
    "text/latex",
    "application/json",
    "text/plain",
)
BINARY_TYPES = frozenset({"image/png", "image/jpeg", "image/gif"})
_REPR_METHODS = (
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("image/svg+xml", "_repr_svg_"),
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
)
_TEXT_PLAIN_CHARS = 100_000

BACKEND = "module://_securepy_worker.inline_backend"

_current: Display | None = None


def current() -> Display | None:
    """The session's Display (None before the worker configured one)."""
    return _current


def configure_matplotlib(cache_dir: str | None) -> None:
    """A headless backend that returns figures, unless the code's environment chose one; a
    writable config directory with the font cache the host prepared (``cache_dir``, read-only),
    so a fresh session neither rebuilds it (0.4 s) nor prints Fontconfig's complaints."""
    os.environ.setdefault("MPLBACKEND", BACKEND)
    if "MPLCONFIGDIR" in os.environ:
        return
    config_dir = os.path.join(os.environ.get("TMPDIR") or "/tmp", ".matplotlib")
    os.environ["MPLCONFIGDIR"] = config_dir
    if not cache_dir:
        return
    try:
        names = [n for n in os.listdir(cache_dir) if n.startswith("fontlist-")]
        if names:
            os.makedirs(config_dir, mode=0o700, exist_ok=True)
        for name in names:  # a link is one syscall; matplotlib only reads the cache
            os.symlink(os.path.join(cache_dir, name), os.path.join(config_dir, name))
    except OSError:
        pass  # matplotlib builds its own cache then: slower, not wrong


def warm_matplotlib() -> None:
    """Draw one figure to PNG and close it, if pyplot is loaded: the first draw loads fonts
    and builds caches (about 0.3 s), which a template pays once for all its sessions."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    import io

    try:
        figure = pyplot.figure()
        axes = figure.add_subplot()
        axes.plot([0, 1], [0, 1], label="warm-up")
        axes.set_title("warm-up")
        axes.set_xlabel("x")
        axes.legend()
        figure.savefig(io.BytesIO(), format="png", bbox_inches="tight")
        pyplot.close(figure)
    except Exception:
        pass  # a broken matplotlib shows itself when the code uses it


class Display:
    """Sends display outputs for one session."""

    def __init__(self, send: Any, flush: Any, max_bytes: int) -> None:
        global _current
        self._send = send  # sends one frame (the connection's send)
        self._flush = flush  # flushes stdout/stderr first, so the order reads right
        self._max_bytes = max_bytes
        _current = self

    def display(self, *objs: Any, raw: bool = False) -> None:
        """Show each object as a rich output (the ``display`` builtin, as in Jupyter).

        ``raw=True``: each object is already a MIME bundle, ``{mime type: content}``.
        """
        for obj in objs:
            bundle = _wire_bundle(obj) if raw else self.bundle(obj)
            if bundle:
                self.send_bundle(bundle)

    def bundle(self, obj: Any) -> dict[str, str]:
        """The wire MIME bundle for ``obj``: what it says of itself, plus text/plain."""
        data: dict[str, Any] = {}
        method = _lookup(obj, "_repr_mimebundle_")
        if method is not None:
            found = _call(method, include=None, exclude=None)
            if isinstance(found, tuple) and found:
                found = found[0]
            if isinstance(found, dict):
                data.update(found)
        for mime, name in _REPR_METHODS:
            if mime in data:
                continue
            method = _lookup(obj, name)
            if method is not None:
                found = _call(method)
                if isinstance(found, tuple) and found:  # (data, metadata)
                    found = found[0]
                if found is not None:
                    data[mime] = found
        if "image/png" not in data and _is_figure(obj):
            data["image/png"] = _figure_png(obj)
        if "text/plain" not in data:
            data["text/plain"] = _safe_repr(obj)
        return _wire_bundle(data)

    def send_bundle(self, bundle: dict[str, str]) -> None:
        self._flush()
        size = sum(len(text) for text in bundle.values())
        if size > self._max_bytes:
            bundle = {
                "text/plain": f"[display output of {size} bytes dropped: over the "
                f"{self._max_bytes}-byte limit]"
            }
        try:
            self._send({"kind": "display", "data": bundle})
        except ValueError:  # over the host's frame cap
            self._send(
                {"kind": "display", "data": {"text/plain": "[display output dropped: too large]"}}
            )

    def show_figures(self) -> None:
        """Show every open pyplot figure, then close them (``plt.show()``, end of execute)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            numbers = pyplot.get_fignums()
        except Exception:
            return
        try:
            for number in numbers:
                self.display(pyplot.figure(number))
        finally:
            try:  # noqa: SIM105 (contextlib costs the worker's start an import)
                pyplot.close("all")
            except Exception:
                pass


def _lookup(obj: Any, name: str) -> Any:
    # On the type, as IPython does: a class (not an instance) passed to display() would
    # otherwise find its own unbound methods.
    if isinstance(obj, type):
        return None
    try:
        if getattr(type(obj), name, None) is None:
            return None
        return getattr(obj, name)
    except Exception:
        return None


def _call(method: Any, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except TypeError:
        if kwargs:
            try:
                return method()
            except Exception:
                return None
        return None
    except Exception:
        return None


def _is_figure(obj: Any) -> bool:
    figure = sys.modules.get("matplotlib.figure")
    return figure is not None and isinstance(obj, figure.Figure)


def _figure_png(figure: Any) -> bytes | None:
    import io

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", bbox_inches="tight")
    except Exception:
        return None
    return buffer.getvalue()


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:
        text = f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"
    return text[:_TEXT_PLAIN_CHARS]


def _wire_bundle(data: Any) -> dict[str, str]:
    """Keep the allowlisted types, each as text: base64 for images, JSON text for JSON."""
    if not isinstance(data, dict):
        return {}
    bundle: dict[str, str] = {}
    for mime in MIME_TYPES:
        value = data.get(mime)
        if value is None:
            continue
        if mime in BINARY_TYPES:
            if isinstance(value, bytes | bytearray | memoryview):
                bundle[mime] = binascii.b2a_base64(bytes(value), newline=False).decode("ascii")
            elif isinstance(value, str):  # already base64, as some _repr_png_ return it
                bundle[mime] = value.replace("\n", "")
        elif mime == "application/json":
            import json

            try:
                bundle[mime] = json.dumps(value, allow_nan=False, default=str)
            except (TypeError, ValueError, RecursionError):
                continue
        elif isinstance(value, str):
            bundle[mime] = value
    return bundle
