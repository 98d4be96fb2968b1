"""Data analysis: upload a CSV, let the (scripted) model explore it with pandas, get a chart back.

What a code interpreter for a data analyst does, with the host's own tools in reach:

1. the host writes a CSV into the session's workspace (``session.files.write``);
2. the model's first snippet explores it with pandas; the DataFrame comes back as HTML and text
   (``Execution.outputs``), the way a notebook shows it;
3. its second snippet calls a host tool (an exchange rate the host looks up: the code holds no
   credentials and has no network) and plots revenue per region with matplotlib;
4. the figure comes back as PNG bytes, written next to this file as ``data_analysis.png``, and
   the code's own summary file comes out with ``session.files.read``.

Runs offline in seconds:

    uv run python examples/data_analysis.py

Set SECUREPY_SANDBOX=0 to run without bubblewrap (unsafe: for machines without it).
"""

from __future__ import annotations

import os
import pathlib

import securepy

SALES_CSV = """\
date,region,product,units,unit_price_usd
2026-01-05,north,widget,12,9.5
2026-01-05,south,widget,7,9.5
2026-01-12,north,gadget,3,24.0
2026-01-12,east,widget,15,9.5
2026-01-19,south,gadget,9,24.0
2026-01-19,east,gadget,4,24.0
2026-01-26,north,widget,20,9.5
2026-01-26,west,gizmo,6,41.0
2026-02-02,west,widget,11,9.5
2026-02-02,south,gizmo,2,41.0
"""


@securepy.tool
def exchange_rate(currency: str) -> float:
    """US dollars to ``currency`` (the host looks it up; here, a fixed table)."""
    rates = {"EUR": 0.92, "GBP": 0.79}
    if currency not in rates:
        raise ValueError(f"no rate for {currency!r}; known: {sorted(rates)}")
    return rates[currency]


# What a model might write, turn by turn, after reading the tool's description.
MODEL_TURNS = [
    """
import pandas as pd
sales = pd.read_csv("uploads/sales.csv", parse_dates=["date"])
sales["revenue_usd"] = sales["units"] * sales["unit_price_usd"]
print(f"{len(sales)} rows, {sales['region'].nunique()} regions")
display(sales.head(3))
""",
    """
import matplotlib.pyplot as plt
rate = exchange_rate("EUR")
by_region = (sales.groupby("region")["revenue_usd"].sum() * rate).round(2).sort_values()
ax = by_region.plot.barh(color="#4c72b0", figsize=(6, 3.5))
ax.set_xlabel("revenue (EUR)")
ax.set_title("Revenue by region")
by_region.to_csv("summary.csv")
print("top region:", by_region.idxmax(), by_region.max(), "EUR")
""",
]


def main() -> None:
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    with securepy.Session(tools=[exchange_rate], sandbox=sandbox, timeout=60) as session:
        session.files.write("uploads/sales.csv", SALES_CSV)
        print("workspace:", [entry.name for entry in session.files.list("uploads")])

        explore = session.execute(MODEL_TURNS[0])
        print(explore.stdout, end="")
        (table,) = explore.outputs
        print("table as html:", table.data["text/html"].startswith("<div>"))

        plot = session.execute(MODEL_TURNS[1])
        print(plot.stdout, end="")
        print("tool calls:", [(call.name, call.arguments) for call in plot.tool_calls])
        (figure,) = plot.outputs
        png = figure.data["image/png"]
        target = pathlib.Path(__file__).with_suffix(".png")
        target.write_bytes(png)
        print(f"figure: {len(png)} bytes of PNG written to {target.name}")
        print("what the model reads:", plot.text.splitlines()[-2:])
        print("summary.csv:", session.files.read("summary.csv").decode().splitlines()[1:])


if __name__ == "__main__":
    main()
