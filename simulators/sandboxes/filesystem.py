"""A file system sandbox rooted in the sandbox's private directory.

Every path argument is relative to the root. Absolute paths, `..` components and any symlink on the
way (in the middle or at the end of a path) are refused, and each access also checks that
`Path.resolve()` stays inside the root; files are opened with `O_NOFOLLOW`, so a symlink swapped in
at the last moment is not followed either.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from simulators.sandboxes.base import BOOL, INT, STR, Handler, JsonObject, Sandbox, ToolError, obj, tool_spec
from synth.records import ToolSpec

DOMAIN = "filesystem"
MAX_CONTENT = 1_000_000
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_PATH = {"type": "string", "minLength": 1, "maxLength": 1024, "description": "path relative to the workspace root"}
_ENTRY = obj({"name": STR, "type": {"enum": ["file", "dir", "symlink", "other"]}, "size": INT})

SPECS: tuple[ToolSpec, ...] = (
    tool_spec(
        DOMAIN,
        "list_dir",
        "List the entries of a directory in the workspace, sorted by name.",
        obj({"path": {**_PATH, "default": "."}}),
        obj({"path": STR, "entries": {"type": "array", "items": _ENTRY}}, ["path", "entries"]),
        failure_modes=["not_found", "not_a_directory", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "read_file",
        "Read a UTF-8 text file from the workspace.",
        obj({"path": _PATH}, ["path"]),
        obj(
            {
                "path": STR,
                "content": STR,
                "size": INT,
                "truncated": BOOL,
            },
            ["path", "content", "size", "truncated"],
        ),
        failure_modes=["not_found", "is_a_directory", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "write_file",
        "Create or replace a text file in the workspace.",
        obj(
            {
                "path": _PATH,
                "content": {"type": "string", "maxLength": MAX_CONTENT},
                "overwrite": {"type": "boolean", "default": True, "description": "replace an existing file"},
                "create_parents": {"type": "boolean", "default": False, "description": "create missing folders"},
            },
            ["path", "content"],
        ),
        obj(
            {"path": STR, "size": INT, "created": BOOL},
            ["path", "size", "created"],
        ),
        effect="write",
        failure_modes=["not_found", "conflict", "is_a_directory", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "move_file",
        "Move or rename a file or folder inside the workspace.",
        obj(
            {
                "source": _PATH,
                "destination": _PATH,
                "overwrite": {"type": "boolean", "default": False, "description": "replace an existing file"},
            },
            ["source", "destination"],
        ),
        obj({"source": STR, "destination": STR}, ["source", "destination"]),
        effect="write",
        failure_modes=["not_found", "conflict", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "delete_file",
        "Delete a file, or a folder (a non-empty one only with recursive=true).",
        obj({"path": _PATH, "recursive": {"type": "boolean", "default": False}}, ["path"]),
        obj({"path": STR, "deleted": {"enum": ["file", "dir"]}}, ["path", "deleted"]),
        effect="write",
        failure_modes=["not_found", "conflict", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "make_dir",
        "Create a folder in the workspace.",
        obj(
            {"path": _PATH, "parents": {"type": "boolean", "default": False, "description": "create missing parents"}},
            ["path"],
        ),
        obj({"path": STR}, ["path"]),
        effect="write",
        failure_modes=["not_found", "conflict", "forbidden_path"],
    ),
    tool_spec(
        DOMAIN,
        "search_files",
        "Find files whose name or path matches a glob, optionally containing a text.",
        obj(
            {
                "pattern": {"type": "string", "minLength": 1, "maxLength": 256, "default": "*"},
                "contains": {"type": "string", "minLength": 1, "maxLength": 1024},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            }
        ),
        obj(
            {
                "matches": {"type": "array", "items": obj({"path": STR, "size": INT})},
                "truncated": BOOL,
            },
            ["matches", "truncated"],
        ),
    ),
)


class FileSystemSandbox(Sandbox):
    """Files under `root`. `initial_state`: {"files": {relative path: text}, "dirs": [relative path]}."""

    name = DOMAIN

    def __init__(self, root: Path, initial_state: JsonObject) -> None:
        super().__init__(root, initial_state)
        for rel in initial_state.get("dirs", []):
            self._path(rel).mkdir(parents=True, exist_ok=True)
        for rel, content in initial_state.get("files", {}).items():
            target = self._path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(target, content)

    def tools(self) -> list[ToolSpec]:
        return [spec.model_copy(deep=True) for spec in SPECS]

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "list_dir": self._list_dir,
            "read_file": self._read_file,
            "write_file": self._write_file,
            "move_file": self._move_file,
            "delete_file": self._delete_file,
            "make_dir": self._make_dir,
            "search_files": self._search_files,
        }

    def state(self) -> JsonObject:
        """{relative path: sha256 of the content, "<dir>", "<symlink>" or "<other>"}, sorted by path."""
        return dict(sorted((self._rel(path), kind) for path, kind in self._walk()))

    # ------------------------------------------------------------ paths

    def _path(self, rel: str, *, allow_root: bool = False) -> Path:
        """The absolute path for `rel`, or `ToolError("forbidden_path")` if it could leave the root."""
        pure = PurePosixPath(rel)
        if "\x00" in rel or "\\" in rel or pure.is_absolute() or ".." in pure.parts:
            raise ToolError("forbidden_path", f"{rel!r}: paths must be relative to the workspace, without '..'")
        parts = [part for part in pure.parts if part != "."]
        if not parts and not allow_root:
            raise ToolError("forbidden_path", f"{rel!r}: the workspace root itself cannot be changed")
        current = self.root
        for part in parts:
            current = current / part
            if current.is_symlink():
                raise ToolError("forbidden_path", f"{rel!r}: symlinks are not followed")
        if not current.resolve().is_relative_to(self.root):
            raise ToolError("forbidden_path", f"{rel!r}: outside the workspace")
        return current

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def _walk(self) -> Iterator[tuple[Path, str]]:
        """Every entry under the root with the sha256 of its content or "<dir>", "<symlink>", "<other>"."""
        for top, dirs, files in os.walk(self.root, followlinks=False):
            dirs.sort()
            for name in [*dirs, *sorted(files)]:
                path = Path(top) / name
                kind = _kind(path)
                yield path, hashlib.sha256(_read(path)).hexdigest() if kind == "file" else f"<{kind}>"

    # ------------------------------------------------------------ tools

    def _list_dir(self, args: JsonObject) -> JsonObject:
        path = self._existing(args.get("path", "."), allow_root=True)
        if not path.is_dir():
            raise ToolError("not_a_directory", f"{args.get('path', '.')!r} is not a folder")
        entries = [_entry(child) for child in sorted(path.iterdir(), key=lambda p: p.name)]
        return {"path": self._rel(path), "entries": entries}

    def _read_file(self, args: JsonObject) -> JsonObject:
        path = self._existing(args["path"])
        if path.is_dir():
            raise ToolError("is_a_directory", f"{args['path']!r} is a folder")
        data = _read(path)
        text = data.decode("utf-8", errors="replace")
        return {
            "path": self._rel(path),
            "content": text[:MAX_CONTENT],
            "size": len(data),
            "truncated": len(text) > MAX_CONTENT,
        }

    def _write_file(self, args: JsonObject) -> JsonObject:
        path = self._path(args["path"])
        existed = path.exists()
        if existed and _kind(path) != "file":  # a folder, or a FIFO that would block the writer
            raise ToolError("is_a_directory", f"{args['path']!r} is not a regular file")
        if existed and not args.get("overwrite", True):
            raise ToolError("conflict", f"{args['path']!r} exists and overwrite is false")
        if not path.parent.is_dir():
            if not args.get("create_parents", False):
                raise ToolError("not_found", f"folder of {args['path']!r} does not exist (create_parents=false)")
            path.parent.mkdir(parents=True)
        size = _write(path, args["content"])
        return {"path": self._rel(path), "size": size, "created": not existed}

    def _move_file(self, args: JsonObject) -> JsonObject:
        source = self._existing(args["source"])
        destination = self._path(args["destination"])
        if destination == source or destination.is_relative_to(source):
            raise ToolError("conflict", f"cannot move {args['source']!r} into itself")
        replaceable = destination.is_file() and source.is_file() and args.get("overwrite", False)
        if destination.exists() and not replaceable:
            raise ToolError("conflict", f"{args['destination']!r} already exists")
        if not destination.parent.is_dir():
            raise ToolError("not_found", f"folder of {args['destination']!r} does not exist")
        os.replace(source, destination)
        return {"source": self._rel(source), "destination": self._rel(destination)}

    def _delete_file(self, args: JsonObject) -> JsonObject:
        path = self._existing(args["path"])
        if not path.is_dir():
            path.unlink()
            return {"path": self._rel(path), "deleted": "file"}
        if any(path.iterdir()):
            if not args.get("recursive", False):
                raise ToolError("conflict", f"folder {args['path']!r} is not empty (recursive=false)")
            shutil.rmtree(path)  # removes symlinks inside without following them
        else:
            path.rmdir()
        return {"path": self._rel(path), "deleted": "dir"}

    def _make_dir(self, args: JsonObject) -> JsonObject:
        path = self._path(args["path"])
        if path.exists():
            raise ToolError("conflict", f"{args['path']!r} already exists")
        if not path.parent.is_dir() and not args.get("parents", False):
            raise ToolError("not_found", f"parent of {args['path']!r} does not exist (parents=false)")
        path.mkdir(parents=True)
        return {"path": self._rel(path)}

    def _search_files(self, args: JsonObject) -> JsonObject:
        pattern, needle, limit = args.get("pattern", "*"), args.get("contains"), args.get("limit", 50)
        matches: list[JsonObject] = []
        for path, kind in self._walk():
            if kind.startswith("<"):
                continue
            rel = self._rel(path)
            if not (fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(path.name, pattern)):
                continue
            if needle is not None and needle not in _read(path).decode("utf-8", errors="replace"):
                continue
            if len(matches) == limit:
                return {"matches": matches, "truncated": True}
            matches.append({"path": rel, "size": path.lstat().st_size})
        return {"matches": matches, "truncated": False}

    def _existing(self, rel: str, *, allow_root: bool = False) -> Path:
        path = self._path(rel, allow_root=allow_root)
        if not path.exists():
            raise ToolError("not_found", f"{rel!r} does not exist")
        return path


def _kind(path: Path) -> str:
    """What `path` itself is (a symlink is never followed): file, dir, symlink or other."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def _entry(path: Path) -> JsonObject:
    kind = _kind(path)
    return {"name": path.name, "type": kind, "size": path.lstat().st_size if kind == "file" else 0}


def _read(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO must not hang the sandbox; anything but a regular file is refused.
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ToolError("forbidden_path", f"{path.name!r} is not a regular file")
        return handle.read()


def _write(path: Path, content: Any) -> int:
    data = str(content).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return len(data)
