"""A pool of pre-started sandboxed sessions serving many snippets from several threads.

Each checkout gets a fresh session (nothing leaks from one snippet to the next) while a
replacement starts in the background. Run it with

    uv run python examples/pool.py

Set SECUREPY_SANDBOX=0 to run without bubblewrap (unsafe: for machines without it).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import securepy


@securepy.tool
def price(item: str) -> float:
    """The price of an item, from the host's catalogue."""
    return {"apple": 0.5, "pear": 0.75, "plum": 0.3}[item]


SNIPPETS = [f"round(price('{item}') * {n}, 2)" for n in range(1, 9)
            for item in ("apple", "pear", "plum")]


def main() -> None:
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    with securepy.SessionPool(size=2, tools=[price], sandbox=sandbox) as pool:
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as threads:
            values = list(threads.map(lambda code: pool.execute(code).value, SNIPPETS))
        elapsed = time.perf_counter() - started
        print(f"ran {len(values)} snippets in {elapsed:.2f} s; total {sum(values):.2f}")

        # Several executes on one checked-out session share its state.
        with pool.session() as session:
            session.execute("basket = [price('apple'), price('pear')]")
            print("basket total:", session.execute("sum(basket)").value)

        # A fresh checkout does not see that state.
        try:
            pool.execute("basket")
        except securepy.ExecutionError as error:
            print("fresh session:", error)
        print("pool:", pool.status())


if __name__ == "__main__":
    main()
