"""Runs written to object storage: `synth generate --out s3://...` against a local S3-compatible
server (moto, on a loopback port), and `file:///...` URIs.

What is checked: run.json, the Parquet shards and the done-markers land in the bucket and no
temporary or partial object is ever left; the trajectories equal a local run's with the same seed and
config; `--resume` skips marked shards and remakes an unmarked one without duplicates; credentials
are refused in URIs and never recorded; object-store runs point `synth query` users to a local copy.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from synth.cli import app
from synth.records import Trajectory, Verdict
from synth.run_folder import read_markers, read_run_info
from synth.store import TABLES, from_table, read_table, shard_exists, shard_paths, write_shard
from synth.store.location import LocationError, NotLocalError, RunLocation, local_run_path

BUCKET = "synth-test"
ACCESS_KEY = "AKIATESTTESTTEST0000"
SECRET_KEY = "test-secret-key-never-recorded"
SMALL = "[run]\nshard_size = 4\ndomains = 2\ntools_per_domain = 3\n"
SEED = "7"
TASKS = "12"
SHARDS = ["00000", "00001", "00002"]  # 12 tasks in shards of 4

# Variables that would change the config or the store under test if inherited from the caller's shell.
CLEAN_ENV = ("SYNTH_PRESET", "SYNTH_TASKS", "SYNTH_SEED", "SYNTH_CONCURRENCY", "RAY_ADDRESS")
CLEAN_AWS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Store:
    endpoint: str
    fs: pafs.S3FileSystem

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix` (relative names), directory markers left out."""
        selector = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path.removeprefix(f"{BUCKET}/{prefix}/") for i in infos if i.type == pafs.FileType.File)


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    """A moto S3 server on a free loopback port with one bucket; the AWS_* variables point at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto is in the dev extra; without it only the s3 tests are skipped
        pytest.skip(f"moto[server] is not installed ({exc}); pip install -e '.[dev]' to run the S3 tests")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEAN_AWS:
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_REGION", "us-east-1")
        patch.setenv("AWS_ENDPOINT_URL", endpoint)  # what synth relies on: pyarrow's from_uri reads it
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        admin = pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            endpoint_override=endpoint,
            allow_bucket_creation=True,
        )
        admin.create_dir(BUCKET)
        try:
            yield Store(endpoint, admin)
        finally:
            server.stop()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "small.toml"
    path.write_text(SMALL)
    return path


def generate(out: str, config: Path, *extra: str) -> Result:
    env: dict[str, str | None] = dict.fromkeys(CLEAN_ENV)
    env["SYNTH_RUNNER"] = "inline"
    args = ["generate", "--out", out, "--tasks", TASKS, "--seed", SEED, "--config", str(config), "--runner", "inline"]
    return CliRunner().invoke(app, [*args, *extra], env=env)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, config: Path) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    result = generate(str(run), config, "-q")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def s3_run(store: Store, config: Path) -> str:
    uri = f"s3://{BUCKET}/runs/r1"
    result = generate(uri, config, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{uri}: 12 tasks"), result.stdout
    return uri


def _trajectories(records: Sequence[object]) -> dict[str, list[dict[str, object]]]:
    return {t.id: [m.model_dump(mode="json") for m in t.messages] for t in records if isinstance(t, Trajectory)}


# ---------------------------------------------------------------- s3


def test_run_json_shards_and_markers_land_in_the_bucket(store: Store, s3_run: str) -> None:
    keys = store.keys("runs/r1")
    assert "run.json" in keys
    for table in ("tools", "agents", "tasks", "trajectories", "verdicts"):
        assert any(key.startswith(f"{table}/part-") and key.endswith(".parquet") for key in keys), table
    assert {f"_done/{name}.json" for name in [*SHARDS, "tools"]} <= set(keys)
    assert not [key for key in keys if key.rsplit("/", 1)[-1].startswith(".")], "temporary objects left behind"
    assert {key.split("/")[0] for key in keys} <= {*TABLES, "_done", "run.json"}
    with store.fs.open_input_stream(f"{BUCKET}/runs/r1/run.json") as source:
        raw = source.read().decode()
    info = json.loads(raw)
    assert info["finished_at"] is not None
    assert info["config"]["run"]["seed"] == int(SEED)
    assert SECRET_KEY not in raw and ACCESS_KEY not in raw
    # synth's own readers see the same run through the URI.
    assert read_run_info(s3_run)["seed"] == int(SEED)
    assert sorted(summary.name for summary in read_markers(s3_run)) == [*SHARDS, "tools"]
    assert shard_exists(s3_run, "trajectories", "00000")
    assert shard_paths(s3_run, "trajectories") == [f"{s3_run}/trajectories/part-{name}.parquet" for name in SHARDS]


def test_s3_trajectories_equal_a_local_run_with_the_same_seed(store: Store, s3_run: str, local_run: Path) -> None:
    shards = [key for key in store.keys("runs/r1") if key.startswith("trajectories/")]
    from_bucket = [
        record
        for key in shards
        for record in from_table(pq.read_table(f"{BUCKET}/runs/r1/{key}", filesystem=store.fs), "trajectories")
    ]
    local = _trajectories(read_table(local_run, "trajectories"))
    assert len(local) == 12
    assert _trajectories(from_bucket) == local
    assert list(_trajectories(from_bucket)) == list(local)  # same order: shard by shard
    assert _trajectories(read_table(s3_run, "trajectories")) == local


def test_resume_on_s3_skips_marked_shards_and_remakes_the_missing_one(store: Store, config: Path) -> None:
    uri = f"s3://{BUCKET}/runs/resumed"
    assert generate(uri, config, "-q").exit_code == 0
    before = read_table(uri, "verdicts")
    before_trajectories = _trajectories(read_table(uri, "trajectories"))
    store.fs.delete_file(f"{BUCKET}/runs/resumed/_done/00001.json")
    store.fs.delete_file(f"{BUCKET}/runs/resumed/verdicts/part-00001.parquet")
    assert not shard_exists(uri, "verdicts", "00001")

    result = generate(uri, config, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming: 2 of 3 shards already done" in result.stderr
    assert "shard 00001" in result.stderr
    assert "shard 00000" not in result.stderr and "shard 00002" not in result.stderr
    assert "aws s3 sync s3://synth-test/runs/resumed ./resumed" in result.stderr

    keys = store.keys("runs/resumed")
    assert "_done/00001.json" in keys and "verdicts/part-00001.parquet" in keys
    after = read_table(uri, "verdicts")
    ids = [verdict.trajectory_id for verdict in after if isinstance(verdict, Verdict)]
    assert len(ids) == len(set(ids)) == len(after) == len(before)
    assert sorted(ids) == sorted(v.trajectory_id for v in before if isinstance(v, Verdict))
    assert _trajectories(read_table(uri, "trajectories")) == before_trajectories
    assert json.loads(store.fs.open_input_stream(f"{BUCKET}/runs/resumed/run.json").read())["resumed_at"]


def test_generate_refuses_a_non_empty_prefix_and_a_missing_bucket(store: Store, s3_run: str, config: Path) -> None:
    taken = generate(s3_run, config, "-q")
    assert taken.exit_code == 2 and "not empty" in taken.stderr and "Traceback" not in taken.stderr
    missing = generate("s3://no-such-bucket/runs/x", config, "-q")
    assert missing.exit_code == 2, missing.output
    assert "no-such-bucket" in missing.stderr and "Traceback" not in missing.stderr


def test_credentials_in_the_uri_are_refused_and_never_echoed(store: Store, config: Path) -> None:
    result = generate(f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/runs/leaky", config, "-q")
    assert result.exit_code == 2
    assert "credentials do not belong in the URI" in result.stderr
    assert SECRET_KEY not in result.output and ACCESS_KEY not in result.output
    assert store.keys("runs/leaky") == []
    with pytest.raises(LocationError, match="environment"):
        RunLocation.of(f"s3://{BUCKET}/runs/x?secret_key=abc")


def test_a_failed_write_leaves_no_object(store: Store) -> None:
    location = RunLocation.of(f"s3://{BUCKET}/runs/atomic")

    def half_then_crash(sink: object) -> None:
        sink.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        location.write_atomic("tools/part-x.parquet", half_then_crash)
    assert store.keys("runs/atomic") == []
    location.write_text("notes/a.txt", "whole")
    assert location.read_text("notes/a.txt") == "whole"
    assert location.list("notes") == ["a.txt"]
    assert location.list("missing") == []


def test_query_on_an_object_store_run_names_the_remedy(s3_run: str) -> None:
    for given in (s3_run, str(Path(s3_run))):  # a typer Path argument collapses s3:// into s3:/
        with pytest.raises(NotLocalError, match=r"aws s3 sync s3://synth-test/runs/r1 \./r1"):
            local_run_path(given, "synth query")


# ---------------------------------------------------------------- file:// and other file systems


def test_file_uri_runs_like_a_local_path(tmp_path: Path, config: Path, local_run: Path) -> None:
    run = tmp_path / "via-uri"
    result = generate(run.as_uri(), config, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{run}: 12 tasks")
    assert (run / "run.json").is_file()
    assert sorted(p.name for p in (run / "_done").iterdir()) == [f"{name}.json" for name in [*SHARDS, "tools"]]
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]
    assert _trajectories(read_table(run, "trajectories")) == _trajectories(read_table(local_run, "trajectories"))
    assert local_run_path(run.as_uri()) == run
    # Resuming through the URI finds every shard done.
    again = generate(run.as_uri(), config, "--resume")
    assert again.exit_code == 0, again.output
    assert "resuming: 3 of 3 shards already done" in again.stderr


def test_path_callers_keep_getting_paths(tmp_path: Path, local_run: Path) -> None:
    records = read_table(local_run, "tools")
    written = write_shard(tmp_path, "tools", "s0", records)
    assert written == tmp_path / "tools" / "part-s0.parquet"
    assert shard_paths(tmp_path, "tools") == [written]
    as_text = write_shard(str(tmp_path), "tools", "s1", records)
    assert as_text == str(tmp_path.resolve() / "tools" / "part-s1.parquet")


def test_other_file_systems_write_through_a_hidden_temporary_name() -> None:
    from pyarrow._fs import _MockFileSystem

    location = RunLocation(_MockFileSystem(), "base/run", "mock://base/run")
    assert location.is_empty()
    location.write_bytes("_done/a.json", b"{}")
    location.write_bytes("_done/a.json", b'{"n": 1}')
    assert location.read_bytes("_done/a.json") == b'{"n": 1}'
    infos = location.fs.get_file_info(pafs.FileSelector("base/run", recursive=True))
    assert [i.path for i in infos if i.type == pafs.FileType.File] == ["base/run/_done/a.json"]
    assert location.display("_done/a.json") == "mock://base/run/_done/a.json"
