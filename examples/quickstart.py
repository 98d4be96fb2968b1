"""Quickstart: LLM-style code runs in a sandbox and calls host tools over a real database.

The host owns an in-memory SQLite database. The sandboxed code cannot open it (or any host
file, or the network); it can only call the two tools the host registered. Run it with

    uv run python examples/quickstart.py

Set SECUREPY_SANDBOX=0 to run without bubblewrap (unsafe: for machines without it).
"""

from __future__ import annotations

import os
import sqlite3

import securepy

db = sqlite3.connect(":memory:", check_same_thread=False)
db.executescript(
    """
    CREATE TABLE mtcars (model TEXT, mpg REAL, cyl INTEGER, hp INTEGER);
    INSERT INTO mtcars VALUES
        ('Mazda RX4', 21.0, 6, 110), ('Datsun 710', 22.8, 4, 93),
        ('Hornet 4 Drive', 21.4, 6, 110), ('Valiant', 18.1, 6, 105),
        ('Duster 360', 14.3, 8, 245), ('Merc 240D', 24.4, 4, 62),
        ('Fiat 128', 32.4, 4, 66), ('Honda Civic', 30.4, 4, 52);
    """
)


@securepy.tool
def list_tables() -> list[str]:
    """Names of the tables in the database."""
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return [name for (name,) in rows]


@securepy.tool
def query_db(table: str, limit: int = 5) -> list[dict[str, object]]:
    """Up to `limit` rows of `table`, as dicts."""
    if table not in list_tables.fn():
        raise ValueError(f"no table named {table!r}")
    # Safe to format: `table` was just checked against the real table names.
    cursor = db.execute(f'SELECT * FROM "{table}" LIMIT ?', (limit,))
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


# What a model might write: call the tools, then compute on the result.
LLM_CODE = """
import statistics
tables = list_tables()
print("tables:", tables)
cars = query_db("mtcars", limit=100)
by_cyl = {}
for car in cars:
    by_cyl.setdefault(car["cyl"], []).append(car["mpg"])
summary = {cyl: round(statistics.mean(mpgs), 1) for cyl, mpgs in sorted(by_cyl.items())}
print("mean mpg by cylinders:", summary)
best = max(cars, key=lambda car: car["mpg"])["model"]
best
"""


def main() -> None:
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    with securepy.Session(tools=[list_tables, query_db], sandbox=sandbox, timeout=30) as session:
        result = session.execute(LLM_CODE)
        print(result.stdout, end="")
        print("value:", result.value)
        print("tool calls:", [(c.name, c.arguments) for c in result.tool_calls])

        # State persists between executes, like a notebook.
        print("most efficient again:", session.execute("best.upper()").value)

        # A host error comes back inside the sandbox as ToolError, which the code can catch.
        caught = session.execute(
            "try:\n    query_db('secrets')\nexcept ToolError as e:\n    msg = str(e)\nmsg"
        )
        print("caught inside:", caught.value)

        # The sandbox cannot read the host's files: the error reaches the host as ExecutionError.
        try:
            session.execute("open('/etc/shadow').read()")
        except securepy.ExecutionError as error:
            print("blocked:", error)


if __name__ == "__main__":
    main()
