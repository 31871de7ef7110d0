"""Binance spot's order and account endpoints, on top of the market-data fake.

``POST/GET/DELETE /api/v3/order``, ``GET /api/v3/openOrders``, ``GET /api/v3/account`` and
``GET /api/v3/myTrades`` as Binance documents them (binance-spot-api-docs, rest-api.md):
SIGNED requests need the ``X-MBX-APIKEY`` header and ``timestamp`` and ``signature``
parameters, and the signature is checked (HMAC-SHA256 of the query string followed by the
body, with :attr:`FakeBinanceOrders.secret`); parameters come as a query string or a form
body; numbers are strings; errors are ``{"code": ..., "msg": ...}`` with Binance's codes
(-1102 missing parameter, -1121 invalid symbol, -2010 rejected, -2011 unknown order to
cancel, -2013 order does not exist, -2014/-1022 bad key or signature).

The matching engine is a stub with the two behaviours a market order shows: it fills at
``price(symbol)`` (the last 1h close, or :attr:`prices`) up to :attr:`liquidity` of the
symbol; what is left either expires (``market_rest=False``: status ``EXPIRED``, as Binance
expires a market order that runs out of book) or rests open as ``PARTIALLY_FILLED`` until
cancelled. Commission (``fee_rate``) is charged as Binance charges it without BNB: in the
base asset on buys, in the quote asset on sells. :attr:`balances` is the account.

An order applied but not answered (a crash between send and acknowledgement) is the
``drop`` fault of :mod:`tests.fakes.server` on ``/api/v3/order``: the order is placed,
then the connection is cut mid-answer.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request

from tests.fakes.exchange import FakeBinance, binance_error

API_KEY = "fake-binance-api-key"
SECRET = "fake-binance-secret"


def _fmt(x: float) -> str:
    return f"{x:.8f}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeBinanceOrders(FakeBinance):
    """The market-data fake plus an account that trades (see the module docstring)."""

    def __init__(self, *args, balances: dict[str, float] | None = None, fee_rate: float = 0.001, **kwargs):
        self.api_key, self.secret = API_KEY, SECRET
        self.balances: dict[str, dict[str, float]] = {
            asset: {"free": amount, "locked": 0.0} for asset, amount in (balances or {"USDT": 10_000.0}).items()}
        self.fee_rate = fee_rate
        self.prices: dict[str, float] = {}
        self.liquidity: dict[str, float] = {}  # most a market order fills per symbol (default: all of it)
        self.market_rest = False
        self.orders: list[dict] = []
        self.order_requests: list[dict] = []  # the parameters of every POST /api/v3/order that was well signed
        self.trades: list[dict] = []
        self._order_ids = itertools.count(1000)
        self._trade_ids = itertools.count(5000)
        super().__init__(*args, **kwargs)

    # ---- what tests read and set -------------------------------------------------------
    def price(self, symbol: str) -> float:
        with self.lock:
            if symbol in self.prices:
                return self.prices[symbol]
            rows = self.klines.get((symbol, "1h"))
            return float(rows[-1][4]) if rows else 100.0

    def placed(self) -> list[dict]:
        """Every order the exchange accepted, oldest first."""
        with self.lock:
            return [dict(o) for o in self.orders]

    def balance(self, asset: str) -> float:
        with self.lock:
            entry = self.balances.get(asset, {"free": 0.0, "locked": 0.0})
            return entry["free"] + entry["locked"]

    def ccxt_config(self) -> dict:
        """H3's market-data config plus the private API here too, for live and sandbox mode alike."""
        config = super().ccxt_config()
        api = {**config["urls"]["api"], "private": f"{self.url}/api/v3"}
        return {**config, "urls": {"api": api, "test": dict(api)}}

    # ---- the routes -----------------------------------------------------------------------
    def add_routes(self) -> None:
        super().add_routes()
        router = APIRouter()

        @router.post("/order")
        async def new_order(request: Request):
            params, error = await self._signed(request, "symbol", "side", "type")
            return error or self._new_order(params)

        @router.get("/order")
        async def query_order(request: Request):
            params, error = await self._signed(request, "symbol")
            if error:
                return error
            order = self._find(params)
            if isinstance(order, dict):
                return self._query_view(order)
            return order

        @router.delete("/order")
        async def cancel_order(request: Request):
            params, error = await self._signed(request, "symbol")
            if error:
                return error
            order = self._find(params)
            if not isinstance(order, dict):
                return binance_error(400, -2011, "Unknown order sent.")
            with self.lock:
                if order["status"] not in ("NEW", "PARTIALLY_FILLED"):
                    return binance_error(400, -2011, "Unknown order sent.")
                order["status"], order["updateTime"] = "CANCELED", _now_ms()
                view = self._base_view(order)
            return {"symbol": view.pop("symbol"), "origClientOrderId": view.pop("clientOrderId"),
                    "orderId": view.pop("orderId"), "orderListId": -1,
                    "clientOrderId": params.get("newClientOrderId", f"cancel{order['orderId']}"),
                    "transactTime": order["updateTime"], **view}

        @router.get("/openOrders")
        async def open_orders(request: Request):
            params, error = await self._signed(request)
            if error:
                return error
            with self.lock:
                return [self._query_view(o) for o in self.orders if o["status"] in ("NEW", "PARTIALLY_FILLED")
                        and params.get("symbol") in (None, o["symbol"])]

        @router.get("/account")
        async def account(request: Request):
            _, error = await self._signed(request)
            if error:
                return error
            rate = str(self.fee_rate)
            with self.lock:
                balances = [{"asset": a, "free": _fmt(b["free"]), "locked": _fmt(b["locked"])} for a, b in self.balances.items()]
            return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
                    "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000", "seller": "0.00000000"},
                    "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                    "requireSelfTradePrevention": False, "preventSor": False, "updateTime": _now_ms(),
                    "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868}

        @router.get("/myTrades")
        async def my_trades(request: Request):
            params, error = await self._signed(request, "symbol")
            if error:
                return error
            with self.lock:
                return [dict(t) for t in self.trades if t["symbol"] == params["symbol"]
                        and ("orderId" not in params or str(t["orderId"]) == params["orderId"])]

        self.app.include_router(router, prefix="/api/v3")

    # ---- signed requests ------------------------------------------------------------------
    async def _signed(self, request: Request, *required: str):
        """(params, None) of a well-signed request, or (None, Binance's error answer)."""
        query = request.url.query
        body = (await request.body()).decode()
        params = dict(parse_qsl(body)) | dict(parse_qsl(query))  # Binance: the query string wins
        if request.headers.get("x-mbx-apikey") != self.api_key:
            return None, binance_error(401, -2014, "API-key format invalid.")
        for name in ("timestamp", "signature", *required):
            if not params.get(name):
                return None, binance_error(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        signed = "".join(part.split("&signature=")[0] for part in (query, body) if part)
        expected = hmac.new(self.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"].lower()):
            return None, binance_error(400, -1022, "Signature for this request is not valid.")
        if "symbol" in params and not self._listed(params["symbol"]):
            return None, binance_error(400, -1121, "Invalid symbol.")
        return params, None

    def _listed(self, symbol: str) -> bool:
        return any(s["symbol"] == symbol for s in self.exchange_info["symbols"])

    def _find(self, params: dict):
        """The order ``orderId`` or ``origClientOrderId`` names, or Binance's error answer."""
        if "orderId" not in params and "origClientOrderId" not in params:
            return binance_error(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        with self.lock:
            for order in reversed(self.orders):  # a client order id can be reused once its order is done: the newest
                if order["symbol"] == params["symbol"] and (
                        str(order["orderId"]) == params.get("orderId") or order["clientOrderId"] == params.get("origClientOrderId")):
                    return order
        return binance_error(400, -2013, "Order does not exist.")

    # ---- the matching engine --------------------------------------------------------------
    def _new_order(self, params: dict):
        with self.lock:
            self.order_requests.append(dict(params))
        symbol, side, kind = params["symbol"], params["side"], params["type"]
        if kind != "MARKET":
            return binance_error(400, -1116, "Invalid orderType.")  # the stub matches market orders only
        if side not in ("BUY", "SELL"):
            return binance_error(400, -1117, "Invalid side.")
        try:
            quantity = float(params["quantity"])
        except (KeyError, ValueError):
            return binance_error(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        info = next(s for s in self.exchange_info["symbols"] if s["symbol"] == symbol)
        base, quote = info["baseAsset"], info["quoteAsset"]
        price = self.price(symbol)
        with self.lock:
            client_id = params.get("newClientOrderId") or f"web_{next(self._order_ids)}"
            if any(o["clientOrderId"] == client_id and o["status"] in ("NEW", "PARTIALLY_FILLED") for o in self.orders):
                return binance_error(400, -2010, "Duplicate order sent.")
            filled = min(quantity, self.liquidity.get(symbol, quantity))
            paying, needed = (quote, filled * price) if side == "BUY" else (base, filled)
            if self.balances.get(paying, {"free": 0.0})["free"] + 1e-12 < needed:
                return binance_error(400, -2010, "Account has insufficient balance for requested action.")
            now = _now_ms()
            order = {"symbol": symbol, "orderId": next(self._order_ids), "clientOrderId": client_id, "origQty": quantity,
                     "executedQty": 0.0, "cummulativeQuoteQty": 0.0, "status": "NEW", "side": side,
                     "time": now, "updateTime": now}
            self.orders.append(order)
            fills = [self._trade(order, base, quote, filled, price)] if filled > 0 else []
            if filled >= quantity:
                order["status"] = "FILLED"
            elif self.market_rest:
                order["status"] = "PARTIALLY_FILLED" if filled > 0 else "NEW"
            else:
                order["status"] = "EXPIRED"
            view = self._base_view(order)
        return {**{k: view[k] for k in ("symbol", "orderId")}, "orderListId": -1, "clientOrderId": client_id,
                "transactTime": now, **{k: v for k, v in view.items() if k not in ("symbol", "orderId", "clientOrderId")},
                "workingTime": now, "fills": fills, "selfTradePreventionMode": "EXPIRE_MAKER"}

    def _trade(self, order: dict, base: str, quote: str, qty: float, price: float) -> dict:
        """One execution of ``order`` (under ``lock``): balances move, the trade is kept; its FULL-response fill."""
        buying = order["side"] == "BUY"
        commission, fee_asset = (qty * self.fee_rate, base) if buying else (qty * price * self.fee_rate, quote)
        for asset, delta in ((base, qty if buying else -qty), (quote, -qty * price if buying else qty * price),
                             (fee_asset, -commission)):
            self.balances.setdefault(asset, {"free": 0.0, "locked": 0.0})["free"] += delta
        order["executedQty"] += qty
        order["cummulativeQuoteQty"] += qty * price
        trade_id = next(self._trade_ids)
        self.trades.append({"symbol": order["symbol"], "id": trade_id, "orderId": order["orderId"], "orderListId": -1,
                            "price": _fmt(price), "qty": _fmt(qty), "quoteQty": _fmt(qty * price),
                            "commission": _fmt(commission), "commissionAsset": fee_asset, "time": _now_ms(),
                            "isBuyer": buying, "isMaker": False, "isBestMatch": True})
        return {"price": _fmt(price), "qty": _fmt(qty), "commission": _fmt(commission), "commissionAsset": fee_asset,
                "tradeId": trade_id}

    @staticmethod
    def _base_view(order: dict) -> dict:
        return {"symbol": order["symbol"], "orderId": order["orderId"], "clientOrderId": order["clientOrderId"],
                "price": "0.00000000", "origQty": _fmt(order["origQty"]), "executedQty": _fmt(order["executedQty"]),
                "cummulativeQuoteQty": _fmt(order["cummulativeQuoteQty"]), "status": order["status"],
                "timeInForce": "GTC", "type": "MARKET", "side": order["side"]}

    def _query_view(self, order: dict) -> dict:
        """GET /api/v3/order's shape of an order (no fills: those are in myTrades)."""
        with self.lock:
            view = self._base_view(order)
        return {**view, "orderListId": -1, "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": order["time"],
                "updateTime": order["updateTime"], "isWorking": True, "workingTime": order["time"],
                "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER"}
