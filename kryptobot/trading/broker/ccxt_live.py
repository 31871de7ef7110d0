"""The live broker: spot market orders on a crypto exchange through ccxt, on the paper ledger.

An order's life, each step on disk before the next begins:

1. ``sent``: the order row is written BEFORE the request leaves. The exchange gets a client
   order id derived from the ledger's (:func:`venue_client_id`), so the order can always be
   found again by it.
2. The exchange's answer settles it: its fills are booked as paper fills are (one fill row:
   the quantity filled, the average price, the commission in the quote currency; the
   position; the cash) and the row becomes ``filled``, ``partial``, or ``canceled`` /
   ``expired`` / ``rejected`` when nothing filled.
3. No usable answer (timeout, dropped connection, 5xx, rate limit, a malformed body): the
   outcome is unknown, so the order is looked up by its client order id, never sent again.
   Found, it is settled as in 2. Not found, it stays ``sent``; every :meth:`CcxtBroker.sync`
   (each cycle, each start) looks again, and an order the exchange still does not know
   ``unknown_grace_seconds`` after it was sent is ``missing``: it never arrived.
4. An answer that refuses it (insufficient balance, a filter, bad credentials): nothing was
   placed, so the row is deleted, as a refused paper order leaves nothing; a Conflict says why.

Partial fills: the trader decides on a bar's close and sends a market order for it. What the
exchange has not filled when the order comes back (a market order that ran out of book
expires part-filled; an order still working is cancelled here) is not left working into
later bars: the filled part is the fill, the position is what was bought, and the next
cycle decides again from there.

Reads (order lookups, balances, trades, markets) are retried with exponential backoff on
ccxt's transient errors, then raise ServiceUnavailable; ``create_order`` is never retried.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import delete, insert, select, update

from kryptobot.errors import Conflict, InvalidInput, ServiceUnavailable
from kryptobot.settings import ConfigError
from kryptobot.trading.broker import database
from kryptobot.trading.broker.base import Fill
from kryptobot.trading.broker.ledger import EPS, Ledger
from kryptobot.trading.broker.schema import account, decisions, fills, orders, positions
from kryptobot.trading.settings import TraderSettings

log = logging.getLogger("kryptobot.trader.broker")

SENT, MISSING = "sent", "missing"
# what the live broker needs of an exchange (ccxt's `has` flags)
REQUIRED = ("createOrder", "fetchOrder", "cancelOrder", "fetchBalance", "fetchMyTrades")
# merged under the user's ccxt config: spot trading only, so spot markets are all that is loaded
BASE_CONFIG = {"enableRateLimit": True, "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}}
CREDENTIALS = {"apiKey": "KRYPTOBOT_EXCHANGE_API_KEY", "secret": "KRYPTOBOT_EXCHANGE_SECRET",
               "password": "KRYPTOBOT_EXCHANGE_PASSWORD"}


class OrderOutcomeUnknown(ServiceUnavailable):
    """An order was sent and the exchange has not said what became of it yet; it is not
    sent again: the next sync looks it up by its client order id."""


def venue_client_id(client_order_id: str) -> str:
    """The exchange's client order id for the ledger's ``client_order_id`` (``BTC/USDT:2024-01-02``).

    A hash, the same on every run: 32 letters and digits fit every exchange's limits
    (Binance: 36 of ``[.A-Z:/a-z0-9_-]``; OKX: 32 alphanumerics), where the ledger's id may
    be longer or hold characters an exchange refuses.
    """
    return "kb" + hashlib.sha256(client_order_id.encode()).hexdigest()[:30]


class CcxtBroker(Ledger):
    """Spot market orders on a ccxt ``exchange`` (already configured: credentials, sandbox).

    ``symbols`` (the watchlist, pairs of one ``quote`` currency) are the holdings a sync
    takes from the account; ``commission`` (a fraction of notional) estimates the cost of
    a buy before it is sent and values fees paid in a third currency (BNB).
    """

    def __init__(self, path: Path | str, exchange: Any, symbols: list[str], *, initial_cash: float, commission: float,
                 kind: str, attempts: int = 4, backoff: float = 0.5, unknown_grace_seconds: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, **ledger):
        import ccxt

        super().__init__(path, initial_cash, kind, **ledger)
        self._ccxt = ccxt
        self.exchange = exchange
        self.symbols = list(symbols)
        self.quote = quote_currency(self.symbols)
        self.commission = commission
        self.attempts, self.backoff, self.sleep = attempts, backoff, sleep
        self.unknown_grace_seconds = unknown_grace_seconds
        # one conversation with the exchange at a time: a sync must not settle an order a
        # submit is still waiting for
        self._venue = threading.RLock()

    # ---- orders --------------------------------------------------------------------------
    def submit(self, client_order_id: str, symbol: str, side: str, quantity: float, price: float, decision: dict | None = None,
               stop: float | None = None, target: float | None = None, bar: str | None = None,
               journal: tuple[str, dict] | None = None) -> Fill:
        """Send a market order, recorded as ``sent`` first; the same ``client_order_id`` is never sent twice.

        ``journal`` (cycle id, decision body) is the decision row written with the ``sent`` row.
        """
        if quantity <= 0 or price <= 0:
            raise InvalidInput(f"order needs quantity > 0 and price > 0, got {quantity} @ {price}", field="quantity")
        with self._venue:
            amount = self._amount(symbol, quantity)
            with self._transaction() as db:
                row = self._order_row(db, client_order_id)
                fresh = row is None
                if fresh:
                    cost = amount * price
                    self._check_affordable(db, symbol, side, amount, cost, cost * self.commission)
                    row = self._insert_order(db, client_order_id, symbol, side, amount, price, 0.0, SENT, decision, stop,
                                             target, bar, journal)
            if fresh:
                fill = self._settle(row, self._send(row))
            else:
                if row["status"] == SENT:
                    self._resolve(row)
                fill = self._filled(client_order_id)
        if fill is None:
            status = self._order(row["id"])["status"]
            raise Conflict(f"{self.exchange.id} order {client_order_id} ({side} {amount} {symbol}) ended {status} "
                           "with nothing filled", field="quantity")
        return fill

    def _send(self, row) -> dict:
        """``create_order`` once; an unknown outcome is looked up, never re-sent."""
        ccxt = self._ccxt
        venue_id = venue_client_id(row["client_order_id"])
        what = f"{row['side']} {row['quantity']} {row['symbol']} ({row['client_order_id']}, client order id {venue_id})"
        try:
            return self.exchange.create_order(row["symbol"], "market", row["side"], row["quantity"], None, {"clientOrderId": venue_id})
        except ccxt.DuplicateOrderId as exc:  # the exchange has it already: it is found below
            reason = exc
        except ccxt.ExchangeError as exc:  # the exchange answered no: nothing was placed
            with self._transaction() as db:  # its decision stays, without an order
                if db.execute(delete(orders).where(orders.c.id == row["id"], orders.c.status == SENT)).rowcount:
                    db.execute(update(decisions).where(decisions.c.order_id == row["id"]).values(order_id=None))
            raise Conflict(f"{self.exchange.id} refused {what}: {type(exc).__name__}: {exc}", field="quantity") from exc
        except Exception as exc:  # no answer, or one that could not be read: it may have been placed
            reason = exc
        log.warning("%s %s: outcome unknown after %s: %s; looking it up", self.exchange.id, what, type(reason).__name__, reason)
        try:
            order = self._lookup(row)
        except ServiceUnavailable as exc:
            raise OrderOutcomeUnknown(f"{self.exchange.id} {what}: outcome unknown after {type(reason).__name__}, and the "
                                      f"lookup failed ({exc.message}); not sent again, the next sync looks it up") from exc
        if order is None:
            raise OrderOutcomeUnknown(f"{self.exchange.id} {what}: outcome unknown after {type(reason).__name__}; "
                                      "not sent again, the next sync looks it up")
        return order

    def _lookup(self, row) -> dict | None:
        """The exchange's order by its client order id; None if it does not know it."""
        try:
            return self._read(f"fetch_order {row['client_order_id']}", self.exchange.fetch_order, None, row["symbol"],
                              {"clientOrderId": venue_client_id(row["client_order_id"])})
        except self._ccxt.OrderNotFound:
            return None

    def _resolve(self, row) -> str:
        """Settle a ``sent`` order from what the exchange says of it; its new status."""
        order = self._lookup(row)
        if order is None:
            age = (datetime.now(timezone.utc) - datetime.fromisoformat(row["created_at"])).total_seconds()
            if age < self.unknown_grace_seconds:
                raise OrderOutcomeUnknown(f"{self.exchange.id} does not know order {row['client_order_id']} yet "
                                          f"({age:.0f}s after it was sent); looking again on the next sync")
            with self._transaction() as db:
                db.execute(update(orders).where(orders.c.id == row["id"], orders.c.status == SENT).values(status=MISSING))
            log.warning("%s never received order %s: marked missing", self.exchange.id, row["client_order_id"])
            return MISSING
        self._settle(row, order)
        return self._order(row["id"])["status"]

    def _settle(self, row, order: dict) -> Fill | None:
        """Book what the exchange filled of ``order`` (cancelling what it has not) on its ledger row."""
        if order.get("status") == "open":
            order = self._cancel_rest(row, order)
            if order.get("status") == "open":
                raise OrderOutcomeUnknown(f"{self.exchange.id} order {row['client_order_id']} is still open after a cancel")
        filled = float(order.get("filled") or 0.0)
        if filled > EPS:
            price, commission = self._execution(row, order, filled)
            status = "filled" if filled >= row["quantity"] * (1 - 1e-9) else "partial"
        else:
            price, commission, status = row["price"], 0.0, order.get("status") or "canceled"
        with self._transaction() as db:
            current = db.execute(select(orders).where(orders.c.id == row["id"])).mappings().first()
            if current is None or current["status"] != SENT:  # settled meanwhile (another trader on this ledger)
                return None if current is None else self._recorded_fill(db, current)
            db.execute(update(orders).where(orders.c.id == row["id"])
                       .values(status=status, price=price, commission=commission, venue_order_id=order.get("id")))
            if filled <= EPS:
                return None
            self._book_fill(db, current, filled, price, commission, mark_price=current["price"])
        log.info("%s %s %s %s: %s %.10g @ %.10g", self.exchange.id, row["client_order_id"], row["side"], row["symbol"],
                 status, filled, price)
        return Fill(row["id"], row["client_order_id"], row["symbol"], row["side"], filled, price, commission)

    def _cancel_rest(self, row, order: dict) -> dict:
        """Cancel what is still working of ``order``; the order as it ended."""
        try:
            self._read(f"cancel_order {row['client_order_id']}", self.exchange.cancel_order, order["id"], row["symbol"])
        except (self._ccxt.ExchangeError, ServiceUnavailable) as exc:  # finished meanwhile, or no answer: the lookup tells
            log.info("%s cancel of %s: %s", self.exchange.id, row["client_order_id"], exc)
        return self._read(f"fetch_order {row['client_order_id']}", self.exchange.fetch_order, order["id"], row["symbol"])

    def _execution(self, row, order: dict, filled: float) -> tuple[float, float]:
        """(average price, commission in the quote currency) of what ``order`` filled."""
        trades = order.get("trades") or []
        if abs(sum(float(t.get("amount") or 0) for t in trades) - filled) > EPS * max(1.0, filled):
            # the answer did not list every fill (a query or cancel answer lists none): ask for them
            found = self._read(f"fetch_my_trades {row['client_order_id']}", self.exchange.fetch_my_trades, row["symbol"],
                               None, None, {"orderId": order["id"]})
            trades = [t for t in found if str(t.get("order")) == str(order["id"])]
        price = order.get("average")
        if not price and order.get("cost"):
            price = float(order["cost"]) / filled
        if not price and trades:
            price = sum(float(t["amount"]) * float(t["price"]) for t in trades) / sum(float(t["amount"]) for t in trades)
        price = float(price or row["price"])
        fees = [t["fee"] for t in trades if t.get("fee")] or order.get("fees") or ([order["fee"]] if order.get("fee") else [])
        return price, self._commission(row["symbol"], fees, price, filled)

    def _commission(self, symbol: str, fees: list[dict], price: float, filled: float) -> float:
        """Fees in the quote currency: base-currency fees at the fill price; a fee in another
        currency (or none reported) is estimated at the configured rate."""
        market = self._markets()[symbol]
        total = 0.0
        for fee in fees:
            cost, currency = float(fee.get("cost") or 0.0), fee.get("currency")
            if cost == 0.0:
                continue
            if currency == market["quote"]:
                total += cost
            elif currency == market["base"]:
                total += cost * price
            else:
                return filled * price * self.commission
        return total if fees else filled * price * self.commission

    # ---- the account ---------------------------------------------------------------------
    def sync(self, prices: dict[str, float]) -> dict:
        """Resolve every ``sent`` order, then take cash and holdings from the exchange.

        Cash is the quote currency's total balance; each traded symbol's position is the
        base currency's total (below the market's minimum amount: none). A holding the
        ledger did not know is adopted at ``prices[symbol]`` (no stop, target or entry
        bar); until the ledger has an order, the synced equity is the initial cash.
        """
        with self._venue:
            resolved, pending = {}, []
            for row in self._rows(select(orders).where(orders.c.status == SENT).order_by(orders.c.id)):
                try:
                    resolved[row["client_order_id"]] = self._resolve(row)
                except OrderOutcomeUnknown as exc:
                    log.warning("%s", exc)
                    pending.append(row["client_order_id"])
            balance = self._read("fetch_balance", self.exchange.fetch_balance)
            return {"orders": resolved, "pending": pending, **self._take_balance(balance, prices)}

    def _take_balance(self, balance: dict, prices: dict[str, float]) -> dict:
        total = balance.get("total") or {}
        markets = self._markets()
        cash = float(total.get(self.quote) or 0.0)
        changed: dict[str, float] = {}
        with self._transaction() as db:
            db.execute(update(account).where(account.c.id == 1).values(cash=cash))
            held = {r["symbol"]: r for r in db.execute(select(positions)).mappings()}
            for symbol in sorted(set(self.symbols) | set(held)):
                market = markets.get(symbol)
                if market is None:
                    continue
                quantity = float(total.get(market["base"]) or 0.0)
                dust = float(((market.get("limits") or {}).get("amount") or {}).get("min") or 0.0)
                position = held.get(symbol)
                if quantity <= max(dust, EPS):
                    if position is not None:
                        db.execute(delete(positions).where(positions.c.symbol == symbol))
                        changed[symbol] = 0.0
                elif position is not None:
                    if abs(position["quantity"] - quantity) > EPS * max(1.0, quantity):
                        db.execute(update(positions).where(positions.c.symbol == symbol).values(quantity=quantity))
                        changed[symbol] = quantity
                elif symbol in prices:
                    db.execute(insert(positions).values(symbol=symbol, quantity=quantity, avg_price=prices[symbol],
                                                        last_price=prices[symbol]))
                    changed[symbol] = quantity
            if db.execute(select(orders.c.id).limit(1)).first() is None:
                market_value = sum(r["quantity"] * r["last_price"] for r in db.execute(select(positions)).mappings())
                if cash + market_value > 0:
                    db.execute(update(account).where(account.c.id == 1).values(initial_cash=cash + market_value))
        return {"cash": cash, "positions": changed}

    # ---- the exchange --------------------------------------------------------------------
    def _markets(self) -> dict:
        # ccxt keeps the markets once loaded: only the first call goes to the exchange
        return self._read("load_markets", self.exchange.load_markets)

    def _amount(self, symbol: str, quantity: float) -> float:
        """``quantity`` cut to the market's step; InvalidInput if the market cannot take it."""
        market = self._markets().get(symbol)
        if market is None:
            raise InvalidInput(f"{self.exchange.id} has no market {symbol!r}", field="symbol")
        if not market.get("spot"):
            raise InvalidInput(f"{symbol} is not a spot market: the ccxt broker trades spot pairs only", field="symbol")
        try:
            amount = float(self.exchange.amount_to_precision(symbol, quantity))
        except self._ccxt.BaseError as exc:
            raise InvalidInput(f"{quantity} {symbol} is not an amount {self.exchange.id} trades: {exc}", field="quantity") from exc
        minimum = float(((market.get("limits") or {}).get("amount") or {}).get("min") or 0.0)
        if amount <= 0 or amount < minimum:
            raise InvalidInput(f"{quantity} {symbol} is below {self.exchange.id}'s minimum amount {minimum}", field="quantity")
        return amount

    def _read(self, what: str, fn: Callable, *args):
        """``fn(*args)``, a request safe to repeat: retried with backoff on transient errors
        (and unparseable answers), then ServiceUnavailable. OrderNotFound is an answer."""
        ccxt = self._ccxt
        for attempt in range(self.attempts):
            try:
                return fn(*args)
            except ccxt.OrderNotFound:
                raise
            except (ccxt.OperationFailed, TypeError, ValueError, KeyError) as exc:
                if attempt == self.attempts - 1:
                    raise ServiceUnavailable(f"{self.exchange.id} {what} failed {self.attempts} times; "
                                             f"last: {type(exc).__name__}: {exc}") from exc
                self.sleep(min(self.backoff * 2**attempt, 30.0))
            except ccxt.BaseError as exc:  # the exchange said no: asking again will not help
                raise ServiceUnavailable(f"{self.exchange.id} {what}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # attempts >= 1

    # ---- ledger reads --------------------------------------------------------------------
    def _order(self, order_id: int) -> dict:
        return dict(self._rows(select(orders).where(orders.c.id == order_id))[0])

    def _filled(self, client_order_id: str) -> Fill | None:
        with database.read_transaction(self._engine) as db:
            return self._recorded_fill(db, self._order_row(db, client_order_id))

    def _recorded_fill(self, db, row) -> Fill | None:
        """The fill of an order submitted before (a duplicate), None if nothing of it filled."""
        has_fill = db.execute(select(fills.c.order_id).where(fills.c.order_id == row["id"])).first() is not None
        return self._fill_of(db, row, duplicate=True) if has_fill else None


def quote_currency(symbols: list[str]) -> str:
    """The one quote currency of spot pairs (``BTC/USDT``, ``ETH/USDT`` -> ``USDT``); ConfigError otherwise."""
    bad = [s for s in symbols if "/" not in s or ":" in s]
    quotes = sorted({s.split("/", 1)[1] for s in symbols if s not in bad})
    if bad or len(quotes) != 1:
        raise ConfigError("trader_settings.json: key 'watchlist': the ccxt broker trades spot pairs of one quote currency "
                          f"(BTC/USDT, ETH/USDT); got {', '.join(symbols)}")
    return quotes[0]


def open_ccxt_broker(trader: TraderSettings, ledger_path: Path | str, *, api_key: str | None, secret: str | None,
                     password: str | None = None, config: dict | None = None, **options) -> CcxtBroker:
    """The live broker ``trader`` configures, or a ConfigError naming what is wrong or missing.

    ``config`` is merged into ccxt's exchange config (urls, options); the credentials come
    from the environment. With ``sandbox`` the exchange's testnet is used
    (``set_sandbox_mode``); an exchange without one is refused unless ``sandbox`` is false.
    Nothing is sent to the exchange here.
    """
    try:
        import ccxt
    except ImportError as exc:
        raise ConfigError("trader_settings.json sets broker 'ccxt', which needs the ccxt package: "
                          "pip install 'kryptobot-ml[markets]'") from exc

    name = trader.exchange
    if name not in ccxt.exchanges:
        raise ConfigError(f"trader_settings.json: key 'exchange': ccxt has no exchange {name!r}; allowed: {', '.join(ccxt.exchanges)}")
    quote_currency(trader.watchlist)
    given = {"apiKey": api_key, "secret": secret, "password": password}
    exchange = getattr(ccxt, name)(ccxt.Exchange.deep_extend(BASE_CONFIG, config or {}, {k: v for k, v in given.items() if v}))
    needed = [k for k, required in exchange.requiredCredentials.items() if required and k in CREDENTIALS]
    missing = [CREDENTIALS[k] for k in needed if not given[k]]
    if missing:
        raise ConfigError(f"trader_settings.json sets broker 'ccxt' ({name}, sandbox {trader.sandbox}) but {' and '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not set: live trading needs the exchange's API credentials "
                          "in the environment")
    lacking = [f for f in REQUIRED if not exchange.has.get(f)]
    if lacking:
        raise ConfigError(f"trader_settings.json: key 'exchange': ccxt's {name} cannot {', '.join(lacking)}, "
                          "which the live broker needs")
    if trader.sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as exc:
            raise ConfigError(f"trader_settings.json: key 'sandbox': {name} has no sandbox or testnet in ccxt; "
                              "set sandbox to false only to trade real money") from exc
    kind = f"ccxt:{name}" + (":sandbox" if trader.sandbox else "")
    return CcxtBroker(ledger_path, exchange, trader.watchlist, initial_cash=trader.initial_cash,
                      commission=trader.commission, kind=kind, **options)
