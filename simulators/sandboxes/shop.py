"""A shop with stock, orders and a money ledger, kept in a private in-memory DuckDB database
(`simulators.sandboxes.memory_db`).

Every statement is parameterised: user input is bound as data, never formatted into SQL. Each write
runs in one transaction, so a refused call changes nothing. DuckDB runs with external access off
(no files at all, no extensions, no network). Money is in integer cents; the balance is the
sum of the ledger; stock never goes below zero (checked by the tools and by a CHECK constraint).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulators.sandboxes.base import INT, STR, Handler, JsonObject, Sandbox, ToolError, obj, tool_spec
from simulators.sandboxes.memory_db import MemoryDatabase
from synth.records import ToolSpec

DOMAIN = "shop"
_DDL = (
    "CREATE TABLE products (sku VARCHAR PRIMARY KEY, name VARCHAR NOT NULL,"
    " price_cents BIGINT NOT NULL CHECK (price_cents >= 0), stock BIGINT NOT NULL CHECK (stock >= 0))",
    "CREATE TABLE orders (order_id VARCHAR PRIMARY KEY, customer VARCHAR NOT NULL, status VARCHAR NOT NULL,"
    " total_cents BIGINT NOT NULL)",
    "CREATE TABLE order_lines (order_id VARCHAR NOT NULL, line INTEGER NOT NULL, sku VARCHAR NOT NULL,"
    " quantity BIGINT NOT NULL CHECK (quantity > 0), unit_price_cents BIGINT NOT NULL, PRIMARY KEY (order_id, line))",
    "CREATE TABLE ledger (entry_id BIGINT PRIMARY KEY, kind VARCHAR NOT NULL, order_id VARCHAR,"
    " amount_cents BIGINT NOT NULL, memo VARCHAR NOT NULL)",
    "CREATE TABLE stock_moves (move_id BIGINT PRIMARY KEY, sku VARCHAR NOT NULL, delta BIGINT NOT NULL,"
    " reason VARCHAR NOT NULL)",
)
_PRODUCT_COLUMNS = ("sku", "name", "price_cents", "stock")
_ORDERS = """SELECT o.*, coalesce((
    SELECT list({'sku': l.sku, 'quantity': l.quantity, 'unit_price_cents': l.unit_price_cents} ORDER BY l.line)
    FROM order_lines AS l WHERE l.order_id = o.order_id), []) AS lines
FROM orders AS o"""
"""Orders with their lines, one statement for any number of them (the state is read after every call)."""
_SKU = {"type": "string", "minLength": 1, "maxLength": 64}
_ORDER_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_PRODUCT = obj(
    {
        "sku": STR,
        "name": STR,
        "price_cents": INT,
        "stock": INT,
    },
    _PRODUCT_COLUMNS,
)
_LINE = obj({"sku": STR, "quantity": INT, "unit_price_cents": INT})
_ORDER = obj(
    {
        "order_id": STR,
        "customer": STR,
        "status": {"enum": ["placed", "refunded"]},
        "total_cents": INT,
        "lines": {"type": "array", "items": _LINE},
    },
    ["order_id", "customer", "status", "total_cents", "lines"],
)
_BALANCE = obj(
    {
        "balance_cents": INT,
        "revenue_cents": INT,
        "refunded_cents": INT,
        "entries": INT,
    },
    ["balance_cents", "revenue_cents", "refunded_cents", "entries"],
)

SPECS: tuple[ToolSpec, ...] = (
    tool_spec(
        DOMAIN,
        "search_products",
        "Search products by text in their name or SKU, cheapest first.",
        obj(
            {
                "query": {"type": "string", "maxLength": 200, "default": ""},
                "max_price_cents": {"type": "integer", "minimum": 0},
                "in_stock_only": {"type": "boolean", "default": False},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            }
        ),
        obj({"products": {"type": "array", "items": _PRODUCT}}, ["products"]),
    ),
    tool_spec(
        DOMAIN,
        "get_order",
        "Get an order with its lines.",
        obj({"order_id": _ORDER_ID}, ["order_id"]),
        obj({"order": _ORDER}, ["order"]),
        failure_modes=["not_found"],
    ),
    tool_spec(
        DOMAIN,
        "place_order",
        "Place an order: takes the items from stock and books the payment in the ledger.",
        obj(
            {
                "customer": {"type": "string", "minLength": 1, "maxLength": 200},
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": obj(
                        {"sku": _SKU, "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000}},
                        ["sku", "quantity"],
                    ),
                },
            },
            ["customer", "items"],
        ),
        obj({"order": _ORDER}, ["order"]),
        effect="write",
        failure_modes=["not_found", "insufficient_stock"],
    ),
    tool_spec(
        DOMAIN,
        "refund_order",
        "Refund a placed order in full: items go back to stock, the money out of the ledger.",
        obj({"order_id": _ORDER_ID, "reason": {"type": "string", "maxLength": 500, "default": ""}}, ["order_id"]),
        obj({"order": _ORDER}, ["order"]),
        effect="write",
        failure_modes=["not_found", "conflict"],
    ),
    tool_spec(
        DOMAIN,
        "adjust_stock",
        "Add (positive delta) or remove (negative delta) units of a product, with a reason.",
        obj(
            {
                "sku": _SKU,
                "delta": {"type": "integer", "minimum": -100_000, "maximum": 100_000, "not": {"const": 0}},
                "reason": {"type": "string", "minLength": 1, "maxLength": 500},
            },
            ["sku", "delta", "reason"],
        ),
        obj({"product": _PRODUCT}, ["product"]),
        effect="write",
        failure_modes=["not_found", "insufficient_stock"],
    ),
    tool_spec(DOMAIN, "get_balance", "The shop's money: balance, revenue and refunds, in cents.", obj({}), _BALANCE),
)


class ShopSandbox(Sandbox):
    """`initial_state`: {"products": [{sku, name, price_cents, stock}], "opening_balance_cents": int}."""

    name = DOMAIN

    def __init__(self, root: Path, initial_state: JsonObject) -> None:
        super().__init__(root, initial_state)
        self._database = MemoryDatabase(DOMAIN)
        self._con = self._database.con
        self._state: JsonObject | None = None  # the tables as `state` reads them, until the next write
        products = initial_state.get("products", [])
        # Few statements: each costs DuckDB ~0.5 ms however small, and an episode builds two shops.
        with self._transaction():
            self._con.execute(";\n".join(_DDL))
            if products:
                rows = ", ".join(["(?, ?, ?, ?)"] * len(products))
                values = [product[column] for product in products for column in _PRODUCT_COLUMNS]
                self._con.execute(f"INSERT INTO products VALUES {rows}", values)
            self._con.execute(
                "INSERT INTO ledger VALUES (1, 'opening', NULL, ?, 'opening balance')",
                [int(initial_state.get("opening_balance_cents", 0))],
            )

    def tools(self) -> list[ToolSpec]:
        return [spec.model_copy(deep=True) for spec in SPECS]

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "search_products": self._search_products,
            "get_order": self._get_order,
            "place_order": self._place_order,
            "refund_order": self._refund_order,
            "adjust_stock": self._adjust_stock,
            "get_balance": self._get_balance,
        }

    def state(self) -> JsonObject:
        # Read after every call, and most calls only read: the tables are queried again only after a
        # write transaction (every write runs in one), and each reader gets its own copy.
        if self._state is None:
            self._state = {
                "products": self._dicts("SELECT * FROM products ORDER BY sku"),
                "orders": self._dicts(f"{_ORDERS} ORDER BY o.order_id"),
                "ledger": self._dicts("SELECT * FROM ledger ORDER BY entry_id"),
                "stock_moves": self._dicts("SELECT * FROM stock_moves ORDER BY move_id"),
            }
        return copy.deepcopy(self._state)

    def close(self) -> None:
        if not self._closed:
            self._database.close()
        super().close()

    # ------------------------------------------------------------ tools

    def _search_products(self, args: JsonObject) -> JsonObject:
        products = self._dicts(
            "SELECT * FROM products"
            " WHERE (contains(lower(name), lower(?)) OR contains(lower(sku), lower(?)))"
            " AND (? IS NULL OR price_cents <= ?) AND (NOT ? OR stock > 0)"
            " ORDER BY price_cents, sku LIMIT ?",
            [args.get("query", "")] * 2
            + [args.get("max_price_cents")] * 2
            + [args.get("in_stock_only", False), args.get("limit", 20)],
        )
        return {"products": products}

    def _get_order(self, args: JsonObject) -> JsonObject:
        return {"order": self._order(args["order_id"])}

    def _place_order(self, args: JsonObject) -> JsonObject:
        wanted: dict[str, int] = {}
        for item in args["items"]:
            wanted[item["sku"]] = wanted.get(item["sku"], 0) + item["quantity"]
        with self._transaction():
            lines = []
            for sku, quantity in wanted.items():
                product = self._product(sku)
                if product["stock"] < quantity:
                    raise ToolError("insufficient_stock", f"{sku!r}: {product['stock']} in stock, {quantity} wanted")
                lines.append((sku, quantity, product["price_cents"]))
            order_id = self._next_order_id()
            total = sum(quantity * price for _, quantity, price in lines)
            self._con.execute("INSERT INTO orders VALUES (?, ?, 'placed', ?)", [order_id, args["customer"], total])
            for number, (sku, quantity, price) in enumerate(lines, start=1):
                self._con.execute("UPDATE products SET stock = stock - ? WHERE sku = ?", [quantity, sku])
                self._con.execute(
                    "INSERT INTO order_lines VALUES (?, ?, ?, ?, ?)", [order_id, number, sku, quantity, price]
                )
            self._book("sale", order_id, total, f"order {order_id} for {args['customer']}")
            return {"order": self._order(order_id)}

    def _refund_order(self, args: JsonObject) -> JsonObject:
        with self._transaction():
            order = self._order(args["order_id"])
            if order["status"] != "placed":
                raise ToolError("conflict", f"order {order['order_id']!r} is already {order['status']}")
            for line in order["lines"]:
                restock = [line["quantity"], line["sku"]]
                self._con.execute("UPDATE products SET stock = stock + ? WHERE sku = ?", restock)
            self._con.execute("UPDATE orders SET status = 'refunded' WHERE order_id = ?", [order["order_id"]])
            memo = f"refund of {order['order_id']}" + (f": {args['reason']}" if args.get("reason") else "")
            self._book("refund", order["order_id"], -order["total_cents"], memo)
            return {"order": self._order(order["order_id"])}

    def _adjust_stock(self, args: JsonObject) -> JsonObject:
        with self._transaction():
            product = self._product(args["sku"])
            if product["stock"] + args["delta"] < 0:
                raise ToolError("insufficient_stock", f"{args['sku']!r}: only {product['stock']} in stock")
            self._con.execute("UPDATE products SET stock = stock + ? WHERE sku = ?", [args["delta"], args["sku"]])
            move_id = self._rows("SELECT coalesce(max(move_id), 0) + 1 FROM stock_moves")[0][0]
            self._con.execute(
                "INSERT INTO stock_moves VALUES (?, ?, ?, ?)", [move_id, args["sku"], args["delta"], args["reason"]]
            )
            return {"product": self._product(args["sku"])}

    def _get_balance(self, args: JsonObject) -> JsonObject:
        balance, revenue, refunded, entries = self._rows(
            "SELECT coalesce(sum(amount_cents), 0),"
            " coalesce(sum(amount_cents) FILTER (WHERE kind = 'sale'), 0),"
            " coalesce(-sum(amount_cents) FILTER (WHERE kind = 'refund'), 0), count(*) FROM ledger"
        )[0]
        return {
            "balance_cents": int(balance),
            "revenue_cents": int(revenue),
            "refunded_cents": int(refunded),
            "entries": int(entries),
        }

    # ------------------------------------------------------------ helpers

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._con.execute(sql, list(params)).fetchall()

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[JsonObject]:
        cursor = self._con.execute(sql, list(params))
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _product(self, sku: str) -> JsonObject:
        rows = self._dicts("SELECT * FROM products WHERE sku = ?", [sku])
        if not rows:
            raise ToolError("not_found", f"no product with SKU {sku!r}")
        return rows[0]

    def _order(self, order_id: str) -> JsonObject:
        rows = self._dicts(f"{_ORDERS} WHERE o.order_id = ?", [order_id])
        if not rows:
            raise ToolError("not_found", f"no order with id {order_id!r}")
        return rows[0]

    def _book(self, kind: str, order_id: str, amount: int, memo: str) -> None:
        entry_id = self._rows("SELECT coalesce(max(entry_id), 0) + 1 FROM ledger")[0][0]
        self._con.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?)", [entry_id, kind, order_id, amount, memo])

    def _next_order_id(self) -> str:
        return f"ord-{self._rows('SELECT count(*) FROM orders')[0][0] + 1}"  # orders are never deleted

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Commit on success, roll back on any exception, so a refused call leaves no trace."""
        self._state = None
        self._con.begin()
        try:
            yield
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()
