"""A calendar / room-booking sandbox: events in plain Python state, checked for double bookings.

Times are ISO 8601 datetimes, stored canonically in UTC (a time without an offset is taken as UTC).
Events occupy the half-open interval [start, end): one ending at 10:00 does not clash with one
starting at 10:00. A confirmed event blocks its room and each of its attendees; a cancelled one is
kept (with its status) but blocks nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulators.sandboxes.base import BOOL, STR, Handler, JsonObject, Sandbox, ToolError, obj, tool_spec
from synth.records import ToolSpec

DOMAIN = "calendar"
_TIME = {
    "type": "string",
    "format": "date-time",
    "minLength": 10,
    "maxLength": 40,
    "description": "ISO 8601 datetime, e.g. 2025-03-04T09:30:00+01:00 (no offset means UTC)",
}
_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_ROOM = {"type": ["string", "null"], "minLength": 1, "maxLength": 100}
_PEOPLE = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 200},
    "uniqueItems": True,
    "maxItems": 50,
}
_EVENT = obj(
    {
        "id": STR,
        "title": STR,
        "start": STR,
        "end": STR,
        "room": {"type": ["string", "null"]},
        "attendees": _PEOPLE,
        "description": STR,
        "status": {"enum": ["confirmed", "cancelled"]},
    },
    ["id", "title", "start", "end", "room", "attendees", "description", "status"],
)
_ONE = obj({"event": _EVENT}, ["event"])
_FIELDS = {
    "title": {"type": "string", "minLength": 1, "maxLength": 200},
    "start": _TIME,
    "end": _TIME,
    "room": _ROOM,
    "attendees": _PEOPLE,
    "description": {"type": "string", "maxLength": 2000},
}

SPECS: tuple[ToolSpec, ...] = (
    tool_spec(
        DOMAIN,
        "list_events",
        "List events overlapping a time window, optionally for one room or attendee.",
        obj(
            {
                "start": _TIME,
                "end": _TIME,
                "room": STR,
                "attendee": STR,
                "include_cancelled": {"type": "boolean", "default": False},
            }
        ),
        obj({"events": {"type": "array", "items": _EVENT}}, ["events"]),
    ),
    tool_spec(
        DOMAIN,
        "get_event",
        "Get one event by id.",
        obj({"event_id": _ID}, ["event_id"]),
        _ONE,
        failure_modes=["not_found"],
    ),
    tool_spec(
        DOMAIN,
        "create_event",
        "Book an event; refused if its room or an attendee is already busy then.",
        obj(_FIELDS, ["title", "start", "end"]),
        _ONE,
        effect="write",
        failure_modes=["conflict", "not_found"],
    ),
    tool_spec(
        DOMAIN,
        "update_event",
        "Change fields of a confirmed event; the new time, room and attendees are re-checked.",
        {**obj({"event_id": _ID, **_FIELDS}, ["event_id"]), "minProperties": 2},
        _ONE,
        effect="write",
        failure_modes=["not_found", "conflict"],
    ),
    tool_spec(
        DOMAIN,
        "cancel_event",
        "Cancel a confirmed event; it stays listed as cancelled and frees its slot.",
        obj({"event_id": _ID}, ["event_id"]),
        _ONE,
        effect="write",
        failure_modes=["not_found", "conflict"],
    ),
    tool_spec(
        DOMAIN,
        "find_free_slot",
        "Find the earliest slot in a window when the room and all attendees are free.",
        obj(
            {
                "duration_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
                "window_start": _TIME,
                "window_end": _TIME,
                "room": STR,
                "attendees": _PEOPLE,
            },
            ["duration_minutes", "window_start", "window_end"],
        ),
        obj(
            {"found": BOOL, "start": {"type": ["string", "null"]}, "end": {"type": ["string", "null"]}},
            ["found", "start", "end"],
        ),
        failure_modes=["not_found"],
    ),
)


class CalendarSandbox(Sandbox):
    """`initial_state`: {"rooms": [name] (optional: any room when absent), "events": [event]}."""

    name = DOMAIN

    def __init__(self, root: Path, initial_state: JsonObject) -> None:
        super().__init__(root, initial_state)
        rooms = initial_state.get("rooms")
        self._rooms: list[str] | None = sorted(rooms) if rooms is not None else None
        self._events: dict[str, JsonObject] = {}
        for raw in initial_state.get("events", []):
            event = self._event(raw, raw.get("id") or self._next_id())
            event["status"] = raw.get("status", "confirmed")
            self._events[event["id"]] = event

    def tools(self) -> list[ToolSpec]:
        return [spec.model_copy(deep=True) for spec in SPECS]

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "list_events": self._list_events,
            "get_event": self._get_event,
            "create_event": self._create_event,
            "update_event": self._update_event,
            "cancel_event": self._cancel_event,
            "find_free_slot": self._find_free_slot,
        }

    def state(self) -> JsonObject:
        return {"rooms": self._rooms, "events": [copy.deepcopy(self._events[key]) for key in sorted(self._events)]}

    # ------------------------------------------------------------ tools

    def _list_events(self, args: JsonObject) -> JsonObject:
        start = _parse(args["start"]) if "start" in args else None
        end = _parse(args["end"]) if "end" in args else None
        found = []
        for event in self._sorted():
            if event["status"] == "cancelled" and not args.get("include_cancelled", False):
                continue
            if start is not None and _parse(event["end"]) <= start:
                continue
            if end is not None and _parse(event["start"]) >= end:
                continue
            if "room" in args and event["room"] != args["room"]:
                continue
            if "attendee" in args and args["attendee"] not in event["attendees"]:
                continue
            found.append(copy.deepcopy(event))
        return {"events": found}

    def _get_event(self, args: JsonObject) -> JsonObject:
        return {"event": copy.deepcopy(self._find(args["event_id"]))}

    def _create_event(self, args: JsonObject) -> JsonObject:
        event = self._event(args, self._next_id())
        self._check_free(event)
        self._events[event["id"]] = event
        return {"event": copy.deepcopy(event)}

    def _update_event(self, args: JsonObject) -> JsonObject:
        current = self._find(args["event_id"])
        if current["status"] == "cancelled":
            raise ToolError("conflict", f"event {current['id']!r} is cancelled")
        changes = {key: value for key, value in args.items() if key != "event_id"}
        event = self._event({**current, **changes}, current["id"])
        self._check_free(event)
        self._events[event["id"]] = event
        return {"event": copy.deepcopy(event)}

    def _cancel_event(self, args: JsonObject) -> JsonObject:
        event = self._find(args["event_id"])
        if event["status"] == "cancelled":
            raise ToolError("conflict", f"event {event['id']!r} is already cancelled")
        event["status"] = "cancelled"
        return {"event": copy.deepcopy(event)}

    def _find_free_slot(self, args: JsonObject) -> JsonObject:
        window_start, window_end = _parse(args["window_start"]), _parse(args["window_end"])
        duration = timedelta(minutes=args["duration_minutes"])
        room = args.get("room")
        if room is not None:
            self._check_room(room)
        people = set(args.get("attendees", []))
        busy = sorted((_parse(e["start"]), _parse(e["end"])) for e in self._blocking(room, people, exclude=None))
        candidate = window_start
        for busy_start, busy_end in busy:
            if busy_start >= candidate + duration:
                break
            candidate = max(candidate, busy_end)
        if candidate + duration <= window_end:
            return {"found": True, "start": _format(candidate), "end": _format(candidate + duration)}
        return {"found": False, "start": None, "end": None}

    # ------------------------------------------------------------ helpers

    def _event(self, fields: JsonObject, event_id: str) -> JsonObject:
        """A validated, canonical confirmed event from `fields` (times in UTC, attendees sorted)."""
        start, end = _parse(fields["start"]), _parse(fields["end"])
        if end <= start:
            raise ToolError("invalid_arguments", "end must be after start")
        room = fields.get("room")
        if room is not None:
            self._check_room(room)
        return {
            "id": event_id,
            "title": fields["title"],
            "start": _format(start),
            "end": _format(end),
            "room": room,
            "attendees": sorted(set(fields.get("attendees", []))),
            "description": fields.get("description", ""),
            "status": "confirmed",
        }

    def _check_free(self, event: JsonObject) -> None:
        start, end = _parse(event["start"]), _parse(event["end"])
        clashes = [
            other["id"]
            for other in self._blocking(event["room"], set(event["attendees"]), exclude=event["id"])
            if _parse(other["start"]) < end and start < _parse(other["end"])
        ]
        if clashes:
            raise ToolError("conflict", f"the room or an attendee is already booked then: {', '.join(clashes)}")

    def _blocking(self, room: str | None, people: set[str], exclude: str | None) -> Iterable[JsonObject]:
        for other in self._sorted():
            if other["status"] != "confirmed" or other["id"] == exclude:
                continue
            if (room is not None and other["room"] == room) or people & set(other["attendees"]):
                yield other

    def _check_room(self, room: str) -> None:
        if self._rooms is not None and room not in self._rooms:
            raise ToolError("not_found", f"no room named {room!r}; rooms: {', '.join(self._rooms)}")

    def _find(self, event_id: str) -> JsonObject:
        event = self._events.get(event_id)
        if event is None:
            raise ToolError("not_found", f"no event with id {event_id!r}")
        return event

    def _sorted(self) -> list[JsonObject]:
        return sorted(self._events.values(), key=lambda e: (_parse(e["start"]), e["id"]))

    def _next_id(self) -> str:
        number = len(self._events) + 1
        while f"evt-{number}" in self._events:
            number += 1
        return f"evt-{number}"


def _parse(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ToolError("invalid_arguments", f"{text!r} is not an ISO 8601 datetime") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
