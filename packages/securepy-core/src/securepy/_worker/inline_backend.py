"""The matplotlib backend of the sandbox: Agg's canvas, and ``show()`` returns the figures.

The worker names it in ``MPLBACKEND`` (display.py); only matplotlib imports it, when the code
uses pyplot, so the worker itself never loads matplotlib. Like Jupyter's inline backend:
nothing opens a window, ``plt.show()`` sends each open figure as a PNG display output and
closes it, and figures left open at the end of an execute are sent the same way.
"""

from __future__ import annotations

from matplotlib.backend_bases import FigureManagerBase as FigureManager
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas

from . import display

__all__ = ["FigureCanvas", "FigureManager", "show"]


def show(*args: object, **kwargs: object) -> None:
    """Send every open figure as a display output, then close them."""
    current = display.current()
    if current is not None:
        current.show_figures()
