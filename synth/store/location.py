"""Where a run lives: a local folder or an object-store prefix, behind one small interface.

`RunLocation.of(where)` takes a plain path (`runs/r1`, `~/runs/r1`) or a URI that
`pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/runs/r1`, `gs://...`, `file:///abs/path`)
and gives a (pyarrow file system, base path) pair with the few operations a run needs: join, read,
list, exists, and an atomic write.

Atomic writes:
- local folders: a hidden temporary name (`.NAME.tmp-XXXX`) in the final folder, fsync, rename, then
  fsync of the folder; the temporary file is removed if anything fails;
- object stores (S3, GCS, Azure): the whole object is built in memory first and sent in one upload;
  a PUT (or a completed multipart upload) is atomic for readers, so no partial object ever appears
  under the final key;
- any other pyarrow file system: written under a hidden temporary name, then moved into place.

Credentials never go in the URI (they would end up in logs and in what is passed to Ray workers):
they come from the environment the way pyarrow and the AWS SDK read it (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for
S3-compatible stores, which `from_uri` honours), or from the store's usual configuration files.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
"""pyarrow file-system type names whose single upload is atomic for readers."""

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A URI that went through pathlib (e.g. a typer `Path` argument) loses one slash: s3://b/k -> s3:/b/k.
_COLLAPSED = re.compile(r"^(s3|gs|gcs|abfss?|az|hdfs|viewfs):/(?!/)", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"key|secret|token|password|credential|signature", re.IGNORECASE)

Producer = Callable[[Any], object]
"""Writes the whole content into the binary sink it is given (a file or a pyarrow output stream)."""


class LocationError(ValueError):
    """The location cannot be used as given; the message says why and what to do."""


class NotLocalError(LocationError):
    """An object-store run where a local folder is needed (e.g. DuckDB queries without httpfs)."""


def is_uri(where: str | os.PathLike[str]) -> bool:
    """Whether `where` names a location by URI (`scheme://...`) rather than a local path."""
    return bool(_URI.match(os.fspath(where)))


def copy_hint(uri: str) -> str:
    """The usual command that copies a remote run to a local folder of the same name."""
    name = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "run"
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "s3":
        return f"aws s3 sync {uri} ./{name}"
    if scheme in ("gs", "gcs"):
        return f"gcloud storage rsync --recursive {uri} ./{name}"
    return f"copy {uri} to a local folder"


def local_run_path(where: str | os.PathLike[str], purpose: str = "this command") -> Path:
    """`where` as an absolute local path; NotLocalError naming the remedy for an object-store run.

    Also recognises an s3/gs URI whose double slash a `pathlib.Path` collapsed (`s3:/bucket/key`)."""
    text = os.fspath(where)
    if _COLLAPSED.match(text):
        text = text.replace(":/", "://", 1)
    if not is_uri(text):
        return Path(text).expanduser().resolve()
    parts = urlsplit(text)
    if parts.scheme.lower() == "file":
        local = RunLocation.of(text).local_path
        if local is not None:
            return local
    # No file system is opened for the others: naming the remedy needs no network.
    uri = urlunsplit((parts.scheme, parts.hostname or "", parts.path.rstrip("/"), "", ""))
    raise NotLocalError(
        f"{uri} is in object storage; {purpose} reads local run folders only "
        f"(DuckDB's httpfs extension is not available): copy the run locally ({copy_hint(uri)}) and use the copy"
    )


@dataclass(frozen=True)
class RunLocation:
    """A folder on some pyarrow file system: `fs` and the `base` path in it (no trailing '/').

    `uri` names it for people and for other processes (Ray workers rebuild it with `RunLocation.of`):
    the absolute path for a local folder, the URI otherwise. It never holds credentials."""

    fs: pafs.FileSystem
    base: str
    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike[str] | RunLocation) -> RunLocation:
        if isinstance(where, RunLocation):
            return where
        text = os.fspath(where)
        if not is_uri(text):
            path = Path(text).expanduser().resolve()
            return cls(pafs.LocalFileSystem(), str(path), str(path))
        parts = urlsplit(text)
        if parts.username or parts.password or any(_SECRET_QUERY.search(k) for k, _ in parse_qsl(parts.query)):
            shown = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
            raise LocationError(
                f"{shown}: credentials do not belong in the URI (they would be logged and sent to workers); "
                "set them in the environment instead (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)"
            )
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise LocationError(f"{text}: not a location pyarrow can open: {exc}") from None
        if isinstance(fs, pafs.LocalFileSystem):
            return cls.of(Path(path))
        uri = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))
        return cls(fs, path.rstrip("/"), uri)

    def __str__(self) -> str:
        return self.uri

    # ------------------------------------------------------------ naming

    @property
    def local_path(self) -> Path | None:
        """The folder as a local Path, or None on an object store."""
        return Path(self.base) if isinstance(self.fs, pafs.LocalFileSystem) else None

    @property
    def is_object_store(self) -> bool:
        return self.fs.type_name in OBJECT_STORES

    def path(self, relative: str = "") -> str:
        """`relative` ('/'-separated) joined to the base, as a path inside `fs`."""
        relative = relative.strip("/")
        return f"{self.base}/{relative}" if relative else self.base

    def display(self, relative: str = "") -> str:
        """`relative` joined to the location, as people (and `RunLocation.of`) know it."""
        relative = relative.strip("/")
        if not relative:
            return self.uri
        if self.local_path is not None:
            return str(self.local_path / relative)
        head, sep, query = self.uri.partition("?")
        return f"{head}/{relative}{sep}{query}"

    def child(self, relative: str) -> RunLocation:
        return RunLocation(self.fs, self.path(relative), self.display(relative))

    # ------------------------------------------------------------ reading

    def _info(self, relative: str) -> pafs.FileInfo:
        info: pafs.FileInfo = self.fs.get_file_info(self.path(relative))
        return info

    def exists(self, relative: str = "") -> bool:
        return self._info(relative).type != pafs.FileType.NotFound

    def is_file(self, relative: str = "") -> bool:
        return self._info(relative).type == pafs.FileType.File

    def is_dir(self, relative: str = "") -> bool:
        return self._info(relative).type == pafs.FileType.Directory

    def is_empty(self) -> bool:
        """Whether nothing is stored under the location (a missing folder is empty)."""
        selector = pafs.FileSelector(self.base, allow_not_found=True, recursive=False)
        return not self.fs.get_file_info(selector)

    def list(self, relative: str = "", pattern: str = "*") -> list[str]:
        """Names of the files directly in folder `relative` that match `pattern`, sorted; hidden
        names (temporary files of unfinished writes) are left out. A missing folder lists nothing."""
        selector = pafs.FileSelector(self.path(relative), allow_not_found=True, recursive=False)
        names = (info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File)
        return sorted(name for name in names if not name.startswith(".") and fnmatch.fnmatchcase(name, pattern))

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as source:
            return bytes(source.read())

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode("utf-8")

    # ------------------------------------------------------------ writing

    def make_dirs(self, relative: str = "") -> None:
        """Create the folder (and its parents); object stores have no folders, so nothing is made."""
        if self.local_path is not None:
            Path(self.path(relative)).mkdir(parents=True, exist_ok=True)
        elif not self.is_object_store:
            self.fs.create_dir(self.path(relative), recursive=True)

    def write_bytes(self, relative: str, data: bytes) -> str:
        return self.write_atomic(relative, lambda sink: sink.write(data))

    def write_text(self, relative: str, text: str) -> str:
        return self.write_bytes(relative, text.encode("utf-8"))

    def remove(self, relative: str) -> None:
        """Delete the file `relative` if it is there (a shard that now has no rows)."""
        if self.is_file(relative):
            self.fs.delete_file(self.path(relative))

    def write_atomic(self, relative: str, produce: Producer) -> str:
        """Write what `produce(sink)` writes as `relative`, atomically (see the module doc); a reader
        sees the previous content or the new one, never part of it. Returns `display(relative)`."""
        if self.local_path is not None:
            _write_local(Path(self.path(relative)), produce)
            return self.display(relative)
        buffer = pa.BufferOutputStream()
        produce(buffer)
        data = buffer.getvalue()
        target = self.path(relative)
        if self.is_object_store:
            # One stream, one write of the complete bytes: the object appears when the upload
            # completes (a failed part fails the close, which then completes nothing).
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return self.display(relative)
        folder, _, name = target.rpartition("/")
        self.fs.create_dir(folder, recursive=True)
        temp = f"{folder}/.{name}.tmp-{secrets.token_hex(8)}"
        try:
            with self.fs.open_output_stream(temp) as out:
                out.write(data)
            self.fs.move(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(temp)
            raise
        return self.display(relative)


def _write_local(path: Path, produce: Producer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    try:
        # "xb": never clobber another writer's temp file; permissions follow the umask.
        with open(temp, "xb") as sink:
            produce(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (before a rename makes it visible under its name)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory (Windows cannot).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
