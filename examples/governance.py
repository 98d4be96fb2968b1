"""Governance: an approval hook on a dangerous tool, a tamper-evident audit log, and errors
scrubbed of host details before a model sees them. Run it with

    uv run python examples/governance.py

Set SECUREPY_SANDBOX=0 to run without bubblewrap (unsafe: for machines without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import securepy

ACCOUNTS = {"alice": 120.0, "bob": 40.0}


def refund_policy(call: Any) -> bool | str:
    """Allow refunds up to 50; anything larger needs a human.

    ``call`` has ``.tool``, ``.arguments`` (already validated) and ``.call_index``.
    """
    return call.arguments["amount"] <= 50 or "refunds over 50 need a human approver"


def refund(customer: str, amount: float) -> float:
    """Refund `amount` to `customer`; returns the new balance."""
    ACCOUNTS[customer] += amount
    return ACCOUNTS[customer]


def main() -> None:
    sandbox = os.environ.get("SECUREPY_SANDBOX", "1") != "0"
    tool = securepy.Tool("refund", "Refund a customer.", refund, approve=refund_policy)
    log_path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    with securepy.Session([tool], sandbox=sandbox, audit_log=log_path,
                          sanitize_errors=True) as session:
        result = session.execute(
            "print('small refund, balance', refund('bob', 10))\n"
            "try:\n    refund('alice', 500)\nexcept PolicyError as e:\n"
            "    print('refused:', e)")
        print(result.stdout, end="")
        try:
            session.execute(f"open({sys.prefix!r} + '/secret.txt')")
        except securepy.ExecutionError as error:
            print("error shown to the model:", error)

    with open(log_path) as log:
        events = [json.loads(line)["event"] for line in log]
    print("audited:", ", ".join(events))
    securepy_command = os.path.join(os.path.dirname(sys.executable), "securepy")
    verify = subprocess.run([securepy_command, "audit", "verify", log_path],
                            capture_output=True, text=True, check=False)
    print("verify:", verify.stdout.strip())


if __name__ == "__main__":
    main()
