"""Execution.outputs: display(), matplotlib figures as PNG, DataFrames as HTML, bounds."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import securepy
from securepy import errors

from ..conftest import TwinSession

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_png(data: bytes) -> tuple[int, int]:
    """The image's (height, width), decoded by matplotlib on the host: it is a real PNG."""
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    return pixels.shape[0], pixels.shape[1]


def test_display_uses_the_objects_own_representations(twin: Callable[..., TwinSession]) -> None:
    session = twin()
    execution = session.execute(
        "class Card:\n"
        "    def _repr_html_(self): return '<b>card</b>'\n"
        "    def _repr_markdown_(self): return '**card**'\n"
        "    def __repr__(self): return 'Card()'\n"
        "class Bundle:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'application/json': {'a': [1, 2]}, 'text/plain': 'bundle',\n"
        "                'application/x-evil': 'dropped'}\n"
        "display(Card(), Bundle())\n"
        "display({'text/plain': 'raw', 'image/png': b'\\x89PNG'}, raw=True)\n"
        "print('after')")
    assert [dict(o.data) for o in execution.outputs] == [
        {"text/html": "<b>card</b>", "text/markdown": "**card**", "text/plain": "Card()"},
        {"application/json": {"a": [1, 2]}, "text/plain": "bundle"},
        {"image/png": b"\x89PNG", "text/plain": "raw"},
    ]
    assert execution.outputs[0].text == "Card()"
    assert execution.stdout == "after\n"
    assert "**card**" in execution.text and "[display: image/png]" in execution.text


@pytest.mark.parametrize("sandbox", [pytest.param(True, marks=pytest.mark.sandbox), False],
                         ids=["sandboxed", "unsandboxed"])
def test_a_matplotlib_figure_comes_back_as_a_png(sandbox: bool) -> None:
    with securepy.Session(sandbox=sandbox) as session:
        execution = session.execute(
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n"
            "ax.plot([1, 2, 3], [2, 4, 1]); ax.set_title('sales')")
        assert len(execution.outputs) == 1
        png = execution.outputs[0].data["image/png"]
        assert isinstance(png, bytes) and png.startswith(PNG_SIGNATURE)
        height, width = _decode_png(png)
        assert 100 < width <= 200 and 75 < height <= 150  # 4x3 in at 50 dpi, tight
        assert execution.outputs[0].text == "<Figure size 200x150 with 1 Axes>"
        # Nothing about fonts or caches in what the model reads, and no repr of bytes.
        assert execution.stderr == ""
        assert "Fontconfig" not in execution.text and "\\x89PNG" not in execution.text
        # Shown figures are closed: the next execute starts with none.
        assert session.execute("plt.get_fignums()").value == []
        assert session.execute("import matplotlib\nmatplotlib.get_backend()").value == (
            "module://_securepy_worker.inline_backend")


def test_plt_show_sends_the_figures_at_once(session: securepy.Session) -> None:
    execution = session.execute(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]); plt.show()\n"
        "print('between')\n"
        "plt.figure(); plt.bar(['a', 'b'], [3, 4])\n"
        "plt.figure(); plt.scatter([1], [1])\n")
    assert len(execution.outputs) == 3  # one from show(), two left open at the end
    assert all(o.data["image/png"].startswith(PNG_SIGNATURE) for o in execution.outputs)
    assert execution.stdout == "between\n" and execution.stderr == ""


def test_figures_shown_even_when_the_code_raises(session: securepy.Session) -> None:
    with pytest.raises(errors.ExecutionError, match="boom"):
        session.execute("import matplotlib.pyplot as plt\nplt.plot([1])\nraise ValueError('boom')")
    assert session.execute("plt.get_fignums()").value == []


def test_a_dataframe_renders_as_html_and_text(session: securepy.Session) -> None:
    execution = session.execute(
        "import pandas as pd\n"
        "display(pd.DataFrame({'region': ['north', 'south'], 'amount': [10, 32]}))")
    (output,) = execution.outputs
    assert "<table" in output.data["text/html"] and "north" in output.data["text/html"]
    assert output.text is not None and "amount" in output.text and "south" in output.text


def test_outputs_are_bounded_in_count_and_size() -> None:
    with securepy.Session(sandbox=False, max_output_bytes=10_000) as session:
        many = session.execute("for i in range(100):\n    display({'text/plain': str(i)}, "
                               "raw=True)")
        assert len(many.outputs) == 64 and many.truncated
        big = session.execute("display({'text/plain': 'x' * 20_000}, raw=True)\n"
                              "display({'text/plain': 'small'}, raw=True)")
        assert [o.text for o in big.outputs] == ["small"] and big.truncated
        # Control: within the limits nothing is cut.
        fine = session.execute("display({'text/plain': 'x' * 5000}, raw=True)")
        assert len(fine.outputs) == 1 and not fine.truncated


def test_a_forged_image_is_a_protocol_error_and_the_session_recovers(
        session: securepy.Session) -> None:
    session.execute("x = 1")
    with pytest.raises(errors.ProtocolError, match="image/png display output that is not valid "
                                                   "base64"):
        session.execute("display({'image/png': '***'}, raw=True)")
    assert session.execute("'x' in dir()").value is False  # a fresh child
    assert session.execute("1 + 1").value == 2


@pytest.mark.sandbox
def test_64_threads_start_under_the_default_limits(sandboxed_session: securepy.Session) -> None:
    """Address space (the 512 MiB default) no longer caps threads (it did at 13). As root, where
    every sandbox runs as uid 65534, RLIMIT_NPROC counts the other sandboxes' threads too,
    until each session has a uid of its own."""
    started = sandboxed_session.execute(
        "import threading\n"
        "stop = threading.Event()\n"
        "threads = [threading.Thread(target=stop.wait) for _ in range(64)]\n"
        "for t in threads: t.start()\n"
        "alive = sum(t.is_alive() for t in threads)\n"
        "stop.set()\n"
        "for t in threads: t.join()\n"
        "alive").value
    assert started == 64


@pytest.mark.sandbox
def test_a_thread_refused_for_memory_names_memory(sandboxed_session: securepy.Session) -> None:
    """Address space reserved (not used) up to the limit, as big libraries do: the next thread
    has no room for its stack, and the error says memory, not processes."""
    with pytest.raises(errors.ResourceLimitError, match="memory limit") as info:
        sandboxed_session.execute(
            "import mmap, threading\n"
            "reserved, size = [], 64 << 20\n"
            "while size >= 64 << 10:\n"
            "    try:\n"
            "        reserved.append(mmap.mmap(-1, size))\n"
            "    except OSError:\n"
            "        size //= 2\n"
            "stop = threading.Event()\n"
            "try:\n"
            "    for _ in range(8):\n"
            "        threading.Thread(target=stop.wait).start()\n"
            "finally:\n"
            "    stop.set()")
    assert info.value.limit == "memory"
    # Control: with the reservations gone, threads start again.
    assert sandboxed_session.execute(
        "del reserved\nt = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "'started'").value == "started"


def test_costly_display_json_is_dropped_not_parsed() -> None:
    from securepy._outputs import decode_bundle

    table = json.dumps([{"a": i, "b": str(i)} for i in range(1000)])
    output, _ = decode_bundle({"application/json": table, "text/plain": "t"})
    assert output is not None and len(output.data["application/json"]) == 1000  # control
    bomb = "[" + ",".join(["[{}]"] * 300_000) + "]"  # 1.2 MB, about 80 times that parsed
    output, size = decode_bundle({"application/json": bomb, "text/plain": "t"})
    assert output is not None and "application/json" not in output.data
    assert output.data["text/plain"] == "t" and size == len(bomb) + 1


def test_a_display_over_the_room_left_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    from securepy import _outputs

    def refuse(*args: object) -> None:
        raise AssertionError("decoded a bundle that cannot be kept")

    bundle = {"application/json": "[1, 2, 3]"}
    assert _outputs.decode_bundle(bundle, room=100)[0] is not None  # control: it fits
    monkeypatch.setattr(_outputs.json, "loads", refuse)
    assert _outputs.decode_bundle(bundle, room=5) == (None, 9)
