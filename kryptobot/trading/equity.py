"""The account's equity over time, replayed from its ledger: fills move cash and holdings,
each decision's price marks its symbol.

The ledger keeps no equity history of its own; replaying it gives the curve a person
expects without a second record that could disagree with the first.
"""
from __future__ import annotations

from collections import defaultdict


def equity_curve(initial_cash: float, fills: list[dict], decisions: list[dict]) -> list[dict]:
    """One point per decision cycle, oldest first: ``time`` (the cycle's last decision),
    ``bar`` (the latest bar it decided on), ``cash``, ``market_value``, ``equity``.

    ``fills``: every fill (``time``, ``symbol``, ``side``, ``quantity`` filled, ``price``
    with slippage, ``commission``), so cash is exact; ``decisions`` may be only the recent
    ones (``cycle_id``, ``created_at``, ``symbol``, ``price``, ``last_bar``). A holding not
    yet marked by a decision is valued at its last fill price.
    """
    cycles: dict[str, list[dict]] = defaultdict(list)
    for d in decisions:
        cycles[d["cycle_id"]].append(d)
    # a cycle's fills are written before its decisions, so at equal times fills go first
    events = [(f["time"], 0, f) for f in fills]
    events += [(max(d["created_at"] for d in ds), 1, ds) for ds in cycles.values()]
    events.sort(key=lambda e: (e[0], e[1]))

    cash, held, last = float(initial_cash), defaultdict(float), {}
    points = []
    for time, kind, item in events:
        if kind == 0:
            notional = item["quantity"] * item["price"]
            cash += (-notional if item["side"] == "buy" else notional) - item["commission"]
            held[item["symbol"]] += item["quantity"] if item["side"] == "buy" else -item["quantity"]
            last[item["symbol"]] = item["price"]
            continue
        for d in item:
            if d.get("price") is not None:
                last[d["symbol"]] = d["price"]
        market = sum(q * last[s] for s, q in held.items() if q > 1e-9)
        bars = [d["last_bar"] for d in item if d.get("last_bar")]
        points.append({"time": time, "bar": max(bars) if bars else None, "cash": cash, "market_value": market, "equity": cash + market})
    return points
