"""Executable sandboxes: tool specs, state hashes and replay, refusals, and each domain's invariants."""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from simulators.sandboxes import (
    SANDBOXES,
    CalendarSandbox,
    FileSystemSandbox,
    Sandbox,
    ShopSandbox,
    matches_expected,
    replay,
)
from synth.records import FunctionCall, ToolCall, ToolSpec

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

FS_STATE: dict[str, Any] = {"files": {"notes/todo.txt": "buy milk\n", "readme.md": "# hi\n"}, "dirs": ["empty"]}
CAL_STATE: dict[str, Any] = {
    "rooms": ["Atlas", "Borealis"],
    "events": [
        {
            "id": "evt-1",
            "title": "Standup",
            "start": "2025-03-03T09:00:00Z",
            "end": "2025-03-03T09:30:00Z",
            "room": "Atlas",
            "attendees": ["ana", "bo"],
        },
    ],
}
SHOP_STATE: dict[str, Any] = {
    "products": [
        {"sku": "MUG-1", "name": "Blue mug", "price_cents": 1200, "stock": 3},
        {"sku": "TEA-7", "name": "Green tea", "price_cents": 550, "stock": 10},
    ],
    "opening_balance_cents": 10_000,
}
INITIAL = {"filesystem": FS_STATE, "calendar": CAL_STATE, "shop": SHOP_STATE}

# A correct action sequence per sandbox (the "gold" actions) and a wrong variant of it.
GOLD: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "filesystem": [
        ("make_dir", {"path": "archive"}),
        ("move_file", {"source": "notes/todo.txt", "destination": "archive/todo.txt"}),
        ("write_file", {"path": "notes/done.txt", "content": "milk bought\n"}),
    ],
    "calendar": [
        (
            "create_event",
            {
                "title": "Review",
                "start": "2025-03-03T11:00:00+01:00",
                "end": "2025-03-03T11:30:00+01:00",
                "room": "Borealis",
                "attendees": ["ana"],
            },
        ),
        (
            "update_event",
            {"event_id": "evt-1", "room": "Borealis", "start": "2025-03-03T08:00:00Z", "end": "2025-03-03T08:15:00Z"},
        ),
    ],
    "shop": [
        ("place_order", {"customer": "dana", "items": [{"sku": "MUG-1", "quantity": 2}]}),
        ("adjust_stock", {"sku": "TEA-7", "delta": -1, "reason": "damaged"}),
    ],
}
WRONG: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "filesystem": [GOLD["filesystem"][0], ("write_file", {"path": "notes/done.txt", "content": "milk bought\n"})],
    "calendar": [GOLD["calendar"][0], ("cancel_event", {"event_id": "evt-1"})],
    "shop": [("place_order", {"customer": "dana", "items": [{"sku": "MUG-1", "quantity": 1}]}), GOLD["shop"][1]],
}
# One read-only call per sandbox (never changes the state) and one call with invalid arguments.
READ = {
    "filesystem": ("read_file", {"path": "readme.md"}),
    "calendar": ("list_events", {}),
    "shop": ("get_balance", {}),
}
INVALID: dict[str, list[tuple[str, Any]]] = {
    "filesystem": [
        ("write_file", {"path": "x.txt"}),
        ("write_file", {"path": "x", "content": 3}),
        ("make_dir", {"path": "d", "mode": 755}),
        ("read_file", ["readme.md"]),
    ],
    "calendar": [
        ("create_event", {"title": "x", "start": "tomorrow", "end": "2025-03-03T10:00:00Z"}),
        ("create_event", {"title": "x", "start": "2025-03-03T11:00:00Z", "end": "2025-03-03T10:00:00Z"}),
        ("update_event", {"event_id": "evt-1"}),
        ("cancel_event", {"event_id": 1}),
    ],
    "shop": [
        ("place_order", {"customer": "dana", "items": []}),
        ("place_order", {"customer": "dana", "items": [{"sku": "MUG-1", "quantity": 0}]}),
        ("adjust_stock", {"sku": "MUG-1", "delta": 0, "reason": "none"}),
        ("refund_order", {}),
    ],
}


def calls(actions: list[tuple[str, dict[str, Any]]]) -> list[ToolCall]:
    return [
        ToolCall(id=f"functions.{name}:{index}", function=FunctionCall(name=name, arguments=json.dumps(args)))
        for index, (name, args) in enumerate(actions)
    ]


@pytest.fixture(params=sorted(SANDBOXES))
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    name: str = request.param
    sandbox = SANDBOXES[name](tmp_path / "live", INITIAL[name])
    yield sandbox
    sandbox.close()


# ---------------------------------------------------------------- common contract


def test_tools_are_valid_specs(box: Sandbox) -> None:
    specs = box.tools()
    assert len(specs) >= 5
    assert {spec.name for spec in specs} == set(box.handlers())
    assert len({spec.id for spec in specs}) == len(specs)
    for spec in specs:
        assert isinstance(spec, ToolSpec)
        assert NAME.match(spec.name)
        jsonschema.Draft202012Validator.check_schema(spec.parameters)
        jsonschema.Draft202012Validator.check_schema(spec.returns)
        assert spec.parameters["type"] == "object" and spec.returns
        assert (spec.source, spec.category, spec.domain) == ("sandbox", "sandbox", box.name)
        assert spec.effect in ("read", "write") and "invalid_arguments" in spec.failure_modes
        assert spec.openai_tool()["function"]["name"] == spec.name
    assert [spec.id for spec in box.tools()] == [spec.id for spec in specs]  # ids are stable


def test_gold_actions_match_and_wrong_ones_do_not(box: Sandbox, tmp_path: Path) -> None:
    factory, initial = SANDBOXES[box.name], INITIAL[box.name]
    for tool_call in calls(GOLD[box.name]):
        result = box.call_tool(tool_call)
        assert "error" not in result, result
    assert matches_expected(box, factory, initial, calls(GOLD[box.name]))
    assert replay(factory, tmp_path / "again", initial, calls(GOLD[box.name])) == box.state_hash()
    assert not matches_expected(box, factory, initial, calls(WRONG[box.name]))
    assert not matches_expected(box, factory, initial, calls(GOLD[box.name][:-1]))  # a missing action
    assert not matches_expected(box, factory, initial, [])


def test_state_is_canonical_and_independent_of_root(box: Sandbox, tmp_path: Path) -> None:
    other = SANDBOXES[box.name](tmp_path / "elsewhere" / "deeper", INITIAL[box.name])
    try:
        assert other.state_hash() == box.state_hash()
        assert json.loads(json.dumps(box.state())) == box.state()
        assert str(tmp_path) not in json.dumps(box.state())
    finally:
        other.close()


def test_reads_invalid_arguments_and_unknown_tools_change_nothing(box: Sandbox) -> None:
    before = box.state_hash()
    name, args = READ[box.name]
    assert "error" not in box.call(name, args)
    for name, args in INVALID[box.name]:
        result = box.call(name, args)
        assert result["error"] == "invalid_arguments", (name, args, result)
        assert result["message"]
    assert box.call("rm_rf", {})["error"] == "unknown_tool"
    bad_json = ToolCall(id="functions.x:0", function=FunctionCall(name=READ[box.name][0], arguments="{oops"))
    assert box.call_tool(bad_json)["error"] == "invalid_arguments"
    assert box.state_hash() == before


def test_closed_sandbox_answers_with_an_error(box: Sandbox) -> None:
    box.close()
    box.close()
    assert box.call(*READ[box.name])["error"] == "closed"


# ---------------------------------------------------------------- filesystem


@pytest.fixture
def fs(tmp_path: Path) -> Any:
    sandbox = FileSystemSandbox(tmp_path / "root", FS_STATE)
    yield sandbox
    sandbox.close()


def test_filesystem_state_lists_files_and_dirs(fs: FileSystemSandbox) -> None:
    state = fs.state()
    assert list(state) == sorted(state)
    assert state["empty"] == state["notes"] == "<dir>"
    assert len(state["readme.md"]) == 64
    assert fs.call("read_file", {"path": "notes/todo.txt"})["content"] == "buy milk\n"
    assert [e["name"] for e in fs.call("list_dir", {})["entries"]] == ["empty", "notes", "readme.md"]
    assert fs.call("search_files", {"pattern": "*.txt", "contains": "milk"})["matches"] == [
        {"path": "notes/todo.txt", "size": 9}
    ]


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "a/../../x", "notes/../../x", "..", "a\\..\\x"])
@pytest.mark.parametrize(
    ("tool", "key"),
    [
        ("read_file", "path"),
        ("write_file", "path"),
        ("list_dir", "path"),
        ("delete_file", "path"),
        ("make_dir", "path"),
    ],
)
def test_filesystem_refuses_traversal(fs: FileSystemSandbox, bad: str, tool: str, key: str) -> None:
    before = fs.state_hash()
    args = {key: bad, "content": "pwned"} if tool == "write_file" else {key: bad}
    assert fs.call(tool, args)["error"] == "forbidden_path"
    assert fs.call("move_file", {"source": "readme.md", "destination": bad})["error"] == "forbidden_path"
    assert fs.state_hash() == before


def test_filesystem_refuses_symlink_to_outside_file(fs: FileSystemSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    (fs.root / "link.txt").symlink_to(outside)
    (fs.root / "notes" / "deep.txt").symlink_to(outside)
    before = fs.state_hash()
    for path in ("link.txt", "notes/deep.txt"):
        assert fs.call("read_file", {"path": path})["error"] == "forbidden_path"
        assert fs.call("write_file", {"path": path, "content": "pwned"})["error"] == "forbidden_path"
        assert fs.call("delete_file", {"path": path})["error"] == "forbidden_path"
        assert fs.call("move_file", {"source": path, "destination": "stolen.txt"})["error"] == "forbidden_path"
    assert fs.call("move_file", {"source": "readme.md", "destination": "link.txt", "overwrite": True})["error"] == (
        "forbidden_path"
    )
    assert outside.read_text() == "top secret"
    assert fs.state()["link.txt"] == "<symlink>"
    assert fs.call("search_files", {"contains": "secret"})["matches"] == []
    assert fs.state_hash() == before


def test_filesystem_refuses_symlinked_directory_escaping_root(fs: FileSystemSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    (fs.root / "escape").symlink_to(outside, target_is_directory=True)
    for call in (
        ("list_dir", {"path": "escape"}),
        ("read_file", {"path": "escape/victim.txt"}),
        ("write_file", {"path": "escape/new.txt", "content": "pwned"}),
        ("write_file", {"path": "escape/victim.txt", "content": "pwned"}),
        ("make_dir", {"path": "escape/sub"}),
        ("delete_file", {"path": "escape/victim.txt"}),
        ("delete_file", {"path": "escape", "recursive": True}),
        ("move_file", {"source": "escape/victim.txt", "destination": "mine.txt"}),
        ("move_file", {"source": "readme.md", "destination": "escape/readme.md"}),
    ):
        assert fs.call(*call)["error"] == "forbidden_path", call
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "keep me"
    assert "escape/victim.txt" not in fs.state()


def test_filesystem_write_move_delete(fs: FileSystemSandbox) -> None:
    assert fs.call("write_file", {"path": "a/b.txt", "content": "x"})["error"] == "not_found"
    assert fs.call("write_file", {"path": "a/b.txt", "content": "x", "create_parents": True})["created"] is True
    assert fs.call("write_file", {"path": "a/b.txt", "content": "y", "overwrite": False})["error"] == "conflict"
    assert fs.call("move_file", {"source": "a/b.txt", "destination": "readme.md"})["error"] == "conflict"
    assert fs.call("move_file", {"source": "a", "destination": "a/inner"})["error"] == "conflict"
    assert fs.call("make_dir", {"path": "a"})["error"] == "conflict"
    assert fs.call("delete_file", {"path": "a"})["error"] == "conflict"
    assert fs.call("delete_file", {"path": "a", "recursive": True}) == {"path": "a", "deleted": "dir"}
    assert fs.call("read_file", {"path": "a/b.txt"})["error"] == "not_found"
    assert fs.call("read_file", {"path": "notes"})["error"] == "is_a_directory"
    assert fs.call("write_file", {"path": ".", "content": "x"})["error"] == "forbidden_path"


def test_filesystem_never_blocks_on_a_fifo(fs: FileSystemSandbox) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(fs.root / "pipe")
    assert "error" in fs.call("read_file", {"path": "pipe"})
    assert "error" in fs.call("write_file", {"path": "pipe", "content": "x"})
    assert fs.state()["pipe"] == "<other>"


# ---------------------------------------------------------------- calendar


@pytest.fixture
def cal(tmp_path: Path) -> Any:
    sandbox = CalendarSandbox(tmp_path, CAL_STATE)
    yield sandbox
    sandbox.close()


def test_calendar_detects_conflicts(cal: CalendarSandbox) -> None:
    before = cal.state_hash()
    same_room = {"title": "Clash", "start": "2025-03-03T09:15:00Z", "end": "2025-03-03T10:00:00Z", "room": "Atlas"}
    same_person = {
        "title": "1:1",
        "start": "2025-03-03T10:20:00+01:00",
        "end": "2025-03-03T11:00:00+01:00",
        "attendees": ["bo", "cy"],
    }
    for args in (same_room, same_person):
        result = cal.call("create_event", args)
        assert result["error"] == "conflict" and "evt-1" in result["message"]
    assert cal.call("create_event", {**same_room, "room": "Nowhere"})["error"] == "not_found"
    assert cal.state_hash() == before
    # Back-to-back is fine: intervals are half-open.
    ok = cal.call("create_event", {**same_room, "start": "2025-03-03T09:30:00Z"})
    assert ok["event"]["id"] == "evt-2" and ok["event"]["start"] == "2025-03-03T09:30:00+00:00"
    assert cal.call("update_event", {"event_id": "evt-2", "start": "2025-03-03T09:00:00Z"})["error"] == "conflict"
    assert cal.call("cancel_event", {"event_id": "evt-1"})["event"]["status"] == "cancelled"
    assert cal.call("cancel_event", {"event_id": "evt-1"})["error"] == "conflict"
    assert cal.call("update_event", {"event_id": "evt-2", "start": "2025-03-03T09:00:00Z"})["event"]["room"] == "Atlas"
    assert cal.call("get_event", {"event_id": "evt-9"})["error"] == "not_found"


def test_calendar_finds_free_slots_and_lists(cal: CalendarSandbox) -> None:
    window = {"window_start": "2025-03-03T08:45:00Z", "window_end": "2025-03-03T12:00:00Z"}
    slot = cal.call("find_free_slot", {"duration_minutes": 30, "room": "Atlas", **window})
    assert slot == {"found": True, "start": "2025-03-03T09:30:00+00:00", "end": "2025-03-03T10:00:00+00:00"}
    early = cal.call("find_free_slot", {"duration_minutes": 15, "attendees": ["ana"], **window})
    assert early["start"] == "2025-03-03T08:45:00+00:00"
    free_room = cal.call("find_free_slot", {"duration_minutes": 30, "room": "Borealis", **window})
    assert free_room["start"] == "2025-03-03T08:45:00+00:00"
    too_long = cal.call("find_free_slot", {"duration_minutes": 600, **window})
    assert too_long == {"found": False, "start": None, "end": None}
    assert len(cal.call("list_events", {"attendee": "bo"})["events"]) == 1
    assert cal.call("list_events", {"start": "2025-03-03T09:30:00Z"})["events"] == []


# ---------------------------------------------------------------- shop


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    sandbox = ShopSandbox(tmp_path, SHOP_STATE)
    yield sandbox
    sandbox.close()


def stock(shop: ShopSandbox) -> dict[str, int]:
    return {p["sku"]: p["stock"] for p in shop.state()["products"]}


def test_shop_stock_never_negative_and_refund_restores(shop: ShopSandbox) -> None:
    before = shop.state_hash()
    too_many = shop.call("place_order", {"customer": "eve", "items": [{"sku": "MUG-1", "quantity": 4}]})
    assert too_many["error"] == "insufficient_stock"
    split = {
        "customer": "eve",
        "items": [{"sku": "TEA-7", "quantity": 1}, {"sku": "MUG-1", "quantity": 2}, {"sku": "MUG-1", "quantity": 2}],
    }
    assert shop.call("place_order", split)["error"] == "insufficient_stock"  # 2 + 2 > 3, nothing taken
    missing = {"customer": "eve", "items": [{"sku": "TEA-7", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]}
    assert shop.call("place_order", missing)["error"] == "not_found"
    assert shop.call("adjust_stock", {"sku": "MUG-1", "delta": -4, "reason": "loss"})["error"] == "insufficient_stock"
    assert shop.state_hash() == before

    order = shop.call(
        "place_order", {"customer": "eve", "items": [{"sku": "MUG-1", "quantity": 3}, {"sku": "TEA-7", "quantity": 2}]}
    )["order"]
    assert order["order_id"] == "ord-1" and order["total_cents"] == 3 * 1200 + 2 * 550
    assert stock(shop) == {"MUG-1": 0, "TEA-7": 8}
    assert shop.call("search_products", {"in_stock_only": True})["products"][0]["sku"] == "TEA-7"
    assert shop.call("get_balance", {})["balance_cents"] == 10_000 + 4700

    refunded = shop.call("refund_order", {"order_id": "ord-1", "reason": "broken"})["order"]
    assert refunded["status"] == "refunded"
    assert stock(shop) == {"MUG-1": 3, "TEA-7": 10}
    assert shop.call("refund_order", {"order_id": "ord-1"})["error"] == "conflict"
    assert shop.call("get_order", {"order_id": "ord-2"})["error"] == "not_found"
    balance = shop.call("get_balance", {})
    assert balance == {"balance_cents": 10_000, "revenue_cents": 4700, "refunded_cents": 4700, "entries": 3}
    assert balance["balance_cents"] == sum(entry["amount_cents"] for entry in shop.state()["ledger"])
    assert all(p["stock"] >= 0 for p in shop.state()["products"])


def test_shop_sql_injection_is_data(shop: ShopSandbox) -> None:
    evil = "x'; DROP TABLE products; --"
    assert shop.call("search_products", {"query": evil})["products"] == []
    assert shop.call("get_order", {"order_id": evil})["error"] == "not_found"
    assert shop.call("adjust_stock", {"sku": evil, "delta": 1, "reason": evil})["error"] == "not_found"
    order = shop.call("place_order", {"customer": evil, "items": [{"sku": "TEA-7", "quantity": 1}]})["order"]
    assert order["customer"] == evil
    assert shop.call("get_order", {"order_id": order["order_id"]})["order"]["customer"] == evil
    assert [p["sku"] for p in shop.call("search_products", {"query": "%"})["products"]] == []  # no LIKE wildcards
    assert [p["sku"] for p in shop.call("search_products", {"query": "mug"})["products"]] == ["MUG-1"]
    assert len(shop.state()["products"]) == 2


def test_shop_has_no_access_outside_its_root(shop: ShopSandbox, tmp_path: Path) -> None:
    assert list(tmp_path.iterdir()) == []  # its tables live in memory
    with pytest.raises(Exception, match="disabled"):
        shop._rows("SELECT * FROM read_text('/etc/hostname')")
    with pytest.raises(Exception, match="disabled"):
        shop._rows(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    with pytest.raises(Exception, match="configuration"):
        shop._rows("SET enable_external_access = true")


def test_shops_share_a_duckdb_instance_but_never_their_tables(tmp_path: Path) -> None:
    """Every shop of a process lives in one DuckDB instance (`simulators.sandboxes.memory_db`), each
    in its own attached database: shops built, changed and closed on many threads at once each see
    their own tables only, and a closed shop's database is gone."""

    def play(index: int) -> tuple[dict[str, Any], str]:
        with ShopSandbox(tmp_path / str(index), SHOP_STATE) as box:
            for _ in range(index % 3):
                box.call("place_order", {"customer": f"c{index}", "items": [{"sku": "TEA-7", "quantity": 1}]})
            box.call("adjust_stock", {"sku": "MUG-1", "delta": index + 1, "reason": "restock"})
            return box.state(), box._rows("SELECT current_database()")[0][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(play, range(40)))
    for index, (state, _) in enumerate(results):
        assert [o["customer"] for o in state["orders"]] == [f"c{index}"] * (index % 3)
        assert {p["sku"]: p["stock"] for p in state["products"]} == {"MUG-1": 3 + index + 1, "TEA-7": 10 - index % 3}
    assert len({database for _, database in results}) == 40
    with ShopSandbox(tmp_path / "last", SHOP_STATE) as box:
        attached = {name for (name,) in box._rows("SELECT database_name FROM duckdb_databases() WHERE NOT internal")}
    assert not attached & {database for _, database in results}, "closed shops' databases are detached"


def test_a_shop_state_is_read_again_after_a_write_and_handed_out_as_a_copy(shop: ShopSandbox) -> None:
    first = shop.state()
    first["products"][0]["stock"] = -99  # a caller's change must not reach the next reader
    assert shop.state()["products"][0]["stock"] == 3
    shop.call("adjust_stock", {"sku": "MUG-1", "delta": 2, "reason": "found two"})
    assert shop.state()["products"][0]["stock"] == 5
    assert shop.call("adjust_stock", {"sku": "MUG-1", "delta": -9, "reason": "x"})["error"] == "insufficient_stock"
    assert shop.state()["products"][0]["stock"] == 5  # a refused write rolled back
