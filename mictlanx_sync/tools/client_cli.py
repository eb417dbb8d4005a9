"""``mictlanx-sync put|get|ls|stat|rm|rm-bucket|peers|health``: the object store from a shell.

Every command talks to the routers of one MictlanX URI: ``--uri``, else the ``MICTLANX_URI``
environment variable, else the local VSS that ``mictlanx-sync vss`` starts. Objects live in
the bucket given by ``--bucket/-b`` (default ``default``)::

    mictlanx-sync put ./photo.jpg -b photos --rf 2 --tag owner=alice
    mictlanx-sync ls photos
    mictlanx-sync get photo.jpg -b photos -o /tmp/
    mictlanx-sync stat photo.jpg -b photos --json

File transfers show tqdm progress bars on a terminal (``--no-progress`` hides them).
``--json`` prints one JSON document on stdout. An operational failure is one line on
stderr (a JSON object with ``--json``) and exit status 1; a bad argument exits with 2.

One module serves every command: ``add_arguments`` reads the command's name from the
subparser's ``prog`` and ``run`` dispatches on ``args.command``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple

if TYPE_CHECKING:
    from ..client.client import Client
    from ..protocol.models import Ball

__all__ = ["COMMANDS", "DEFAULT_URI", "add_arguments", "run"]

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"
DEFAULT_BUCKET = "default"
COMMANDS = ("put", "get", "ls", "stat", "rm", "rm-bucket", "peers", "health")


class Output(NamedTuple):
    """What a command prints: ``text`` for people, ``data`` for ``--json``; ``ok=False`` exits 1."""

    text: str
    data: Any
    ok: bool = True


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


# --- arguments ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the command this subparser is for (its name ends ``parser.prog``)."""
    command = parser.prog.rsplit(" ", 1)[-1]
    if command not in COMMANDS:
        raise ValueError(f"client_cli has no command {command!r}")
    _COMMAND_ARGUMENTS[command](parser)
    common = parser.add_argument_group("connection and output")
    common.add_argument("--uri", default=None,
                        help="MictlanX URI of the routers (default: $MICTLANX_URI, else the local VSS "
                             "on localhost:60666)")
    common.add_argument("--ca-file", default=None, metavar="PEM",
                        help="CA bundle that verifies https routers, e.g. the one `mictlanx-sync vss --tls` "
                             "prints (default: $MICTLANX_CA_FILE, else the trusted CAs of requests/certifi)")
    if command not in ("peers", "health"):
        common.add_argument("-b", "--bucket", default=DEFAULT_BUCKET, help="bucket (default: default)")
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common.add_argument("--retries", type=int, default=5, help="attempts per request (default 5)")
    common.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False,
                        help="keep downloaded chunks in the user's chunk cache (default: --no-cache; "
                             "a one-shot command gains nothing from filling it)")
    common.add_argument("-v", "--verbose", action="store_true", help="log retries and requests on stderr")


def _put_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="file to upload")
    parser.add_argument("-k", "--key", default=None, help="object key (default: the file's name)")
    parser.add_argument("--chunk-size", default="1MB", help="chunk size, e.g. 256kb, 8MB (default 1MB)")
    parser.add_argument("--rf", type=int, default=1, help="replication factor (default 1)")
    parser.add_argument("--tag", action="append", default=[], metavar="K=V", help="metadata tag (repeatable)")
    parser.add_argument("--update", action="store_true", help="replace an object with other content")


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", metavar="KEY", help="object key")
    parser.add_argument("-o", "--output", default=None, metavar="PATH",
                        help="file or directory to write (default: the current directory, named after "
                             "the object's fullname tag); - writes to stdout")
    parser.add_argument("--chunk-size", default="1MB", help="read piece size (default 1MB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file with other content")


def _bucket_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bucket_arg", nargs="?", default=None, metavar="BUCKET",
                        help="bucket (default: the --bucket option)")


def _key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key", metavar="KEY", help="object key")


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    _key_argument(parser)
    parser.add_argument("--missing-ok", action="store_true", help="succeed when the object does not exist")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


_COMMAND_ARGUMENTS: Dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "put": _put_arguments, "get": _get_arguments, "ls": _bucket_argument, "stat": _key_argument,
    "rm": _rm_arguments, "rm-bucket": _bucket_argument, "peers": _no_arguments, "health": _no_arguments,
}


# --- running ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run ``args.command``; 0 on success, 1 on an operational failure, 2 on a bad argument."""
    command = args.command
    # The client logs each retry at WARNING: keep stderr to one line per failure unless asked.
    handler: logging.Handler = logging.NullHandler()
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    library_logger = logging.getLogger("mictlanx_sync")
    library_logger.addHandler(handler)
    if args.verbose:
        library_logger.setLevel(logging.INFO)
    try:
        return _run(command, args)
    finally:
        library_logger.removeHandler(handler)
        if args.verbose:
            library_logger.setLevel(logging.NOTSET)


def _run(command: str, args: argparse.Namespace) -> int:
    from ..client.client import Client
    from ..client.progress import should_show
    from ..protocol.errors import MictlanXError
    from ..protocol.policies import RetryPolicy

    try:
        if args.retries < 1:
            raise UsageError("--retries must be >= 1")
        _check_sizes(args)
        uri = args.uri or os.environ.get("MICTLANX_URI") or DEFAULT_URI
        try:
            # On a terminal, a bar for every transfer (even under BAR_MIN_BYTES): the user ran
            # one command and watches it; --no-progress hides them.
            ca_file = args.ca_file or os.environ.get("MICTLANX_CA_FILE") or None
            client = Client(uri, progress=not args.no_progress and should_show(None),
                            retry=RetryPolicy(retries=args.retries), verify=ca_file or True,
                            **({} if args.cache else _NO_CACHE))
        except (MictlanXError, ValueError) as exc:
            raise UsageError(f"invalid URI {uri!r}: {_message(exc)}") from None
        with client:
            output = _HANDLERS[command](client, args)
    except UsageError as exc:
        _fail(command, args, "UsageError", str(exc))
        return 2
    except MictlanXError as exc:
        _fail(command, args, type(exc).__name__, _flag_words(exc.message), status_code=exc.status_code,
              code=exc.code)
        return 1
    except BrokenPipeError:  # e.g. `get KEY -o - | head`: the reader left, nothing to report
        _silence_stdout()
        return 1
    except OSError as exc:
        _fail(command, args, type(exc).__name__, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    if output.data is not None or output.text:
        print(json.dumps(output.data) if args.json else output.text, flush=True)
    return 0 if output.ok else 1


_NO_CACHE: Dict[str, Any] = {"capacity_storage": "0", "cache_path": None}

# The client's messages name its parameters; on the command line the flags are the words.
_FLAG_WORDS = (("use update=True to replace it", "use --update to replace it"),
               ("overwrite=True replaces it", "--overwrite replaces it"),
               ("update=True", "--update"), ("overwrite=True", "--overwrite"))


def _flag_words(message: str) -> str:
    for parameter, flag in _FLAG_WORDS:
        message = message.replace(parameter, flag)
    return message


def _check_sizes(args: argparse.Namespace) -> None:
    """A bad ``--chunk-size`` is a bad argument (exit 2), found before any request."""
    from ..client.options import chunk_size_bytes

    value = getattr(args, "chunk_size", None)
    if value is None:
        return
    try:
        chunk_size_bytes(value)
    except (ValueError, TypeError):
        raise UsageError(f"--chunk-size expects a positive size such as 256kb, 1MB or 8MB, got {value!r}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {plural or word + 's'}"


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


def _fail(command: str, args: argparse.Namespace, error: str, message: str, **extra: Any) -> None:
    """One line on stderr: ``mictlanx-sync CMD: Error: message``, or a JSON object with ``--json``."""
    message = " ".join(str(message).split())
    if getattr(args, "json", False):
        line = json.dumps({"command": command, "error": error, "message": message, **extra})
    else:
        line = f"mictlanx-sync {command}: {error}: {message}"
    print(line, file=sys.stderr, flush=True)


def _bucket(args: argparse.Namespace) -> str:
    return str(getattr(args, "bucket_arg", None) or args.bucket)


def _parse_tags(items: List[str]) -> Dict[str, str]:
    tags: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--tag expects K=V, got {item!r}")
        tags[name.strip()] = value
    return tags


def _ball_json(ball: Ball) -> Dict[str, Any]:
    return {"bucket_id": ball.bucket_id, "key": ball.ball_id, "size": ball.size, "checksum": ball.checksum,
            "chunks": len(ball.chunks), "fullname": ball.fullname,
            # -1 is the model's "unknown" (no updated_at tag): JSON says null, not a date in 1969.
            "updated_at": ball.updated_at if ball.updated_at >= 0 else None}


def _user_tags(ball: Ball) -> Dict[str, str]:
    """The tags a user gave: without the layout's own (the five required ones and the
    chunk-checksum manifest)."""
    from ..client.layout import RESERVED_TAGS

    tags = ball.chunks[0].tags if ball.chunks else {}
    return {k: v for k, v in sorted(tags.items()) if k not in RESERVED_TAGS}


# --- commands ---------------------------------------------------------------------------------------
def _put(client: Client, args: argparse.Namespace) -> Output:
    bucket, path = _bucket(args), args.file
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such file", path)
    key = args.key or os.path.basename(path)
    tags = _parse_tags(args.tag)
    client.put_file(bucket, key, path, tags=tags, chunk_size=args.chunk_size, rf=args.rf,
                    update=args.update).unwrap()
    ball = client.get_metadata(bucket, key).unwrap()
    data = {**_ball_json(ball), "rf": args.rf, "path": os.path.abspath(path)}
    text = (f"put {path} -> {bucket}/{key} ({_plural(ball.size, 'byte')}, {_plural(len(ball.chunks), 'chunk')}, "
            f"rf={args.rf})")
    return Output(text, data)


def _get(client: Client, args: argparse.Namespace) -> Output:
    bucket, key, output = _bucket(args), args.key, args.output
    if output == "-":
        return _get_to_stdout(client, bucket, key, args)
    directory, fullname = "", ""
    if output:
        if os.path.isdir(output) or output.endswith(os.sep):
            directory = output
        else:
            directory, fullname = os.path.split(output)
    path = client.get_to_file(bucket, key, output_path=directory, fullname=fullname, chunk_size=args.chunk_size,
                              overwrite=args.overwrite).unwrap()
    size = os.path.getsize(path)
    data = {"bucket_id": bucket, "key": key, "path": os.path.abspath(path), "size": size}
    return Output(f"get {bucket}/{key} -> {path} ({_plural(size, 'byte')}, verified)", data)


def _get_to_stdout(client: Client, bucket: str, key: str, args: argparse.Namespace) -> Output:
    stream = sys.stdout.buffer
    size = 0
    for _meta, piece in client.get_chunks(bucket, key, chunk_size=args.chunk_size, order=True):
        stream.write(piece)
        size += len(piece)
    stream.flush()
    # stdout carries the object: report on stderr, and only with --json.
    if args.json:
        print(json.dumps({"bucket_id": bucket, "key": key, "path": "-", "size": size}), file=sys.stderr)
    return Output("", None)


def _ls(client: Client, args: argparse.Namespace) -> Output:
    bucket_id = _bucket(args)
    bucket = client.get_bucket_metadata(bucket_id).unwrap()
    balls = sorted(bucket.balls.values(), key=lambda b: b.ball_id)
    lines = [f"{ball.size:>14}  {len(ball.chunks):>6}  {ball.ball_id}" for ball in balls]
    lines.append(f"{_plural(len(balls), 'object')}, {_plural(bucket.size_bytes(), 'byte')} in {bucket_id}")
    data = {"bucket_id": bucket_id, "size": bucket.size_bytes(), "objects": [_ball_json(b) for b in balls]}
    return Output("\n".join(lines), data)


def _stat(client: Client, args: argparse.Namespace) -> Output:
    ball = client.get_metadata(_bucket(args), args.key).unwrap()
    tags = _user_tags(ball)
    data = {**_ball_json(ball), "content_type": ball.chunks[0].content_type if ball.chunks else "", "tags": tags,
            "chunk_keys": [{"key": m.key, "size": m.size, "checksum": m.checksum} for m in ball.chunks]}
    lines = [
        f"key:          {ball.bucket_id}/{ball.ball_id}",
        f"size:         {_plural(ball.size, 'byte')}",
        f"sha256:       {ball.checksum}",
        f"chunks:       {len(ball.chunks)}",
        f"content type: {data['content_type']}",
        *(f"tag:          {k}={v}" for k, v in tags.items()),
    ]
    return Output("\n".join(lines), data)


def _rm(client: Client, args: argparse.Namespace) -> Output:
    from ..client.messages import missing_object
    from ..protocol.errors import NotFoundError

    bucket, key = _bucket(args), args.key
    deleted = client.delete(bucket_id=bucket, ball_id=key).unwrap()
    if deleted.n_deletes == 0 and not args.missing_ok:
        raise NotFoundError(f"nothing removed: {missing_object(bucket, key)} (--missing-ok makes this a success)",
                            bucket_id=bucket, key=key)
    data = {"bucket_id": bucket, "key": key, "n_deletes": deleted.n_deletes, "pending_peers": deleted.pending_peers}
    pending = f", pending on {', '.join(deleted.pending_peers)}" if deleted.pending_peers else ""
    return Output(f"removed {bucket}/{key} ({_plural(deleted.n_deletes, 'chunk copy', 'chunk copies')}{pending})", data)


def _rm_bucket(client: Client, args: argparse.Namespace) -> Output:
    bucket = _bucket(args)
    # delete_bucket counts chunk keys (101 for 5 objects); people count objects.
    objects = len(client.get_bucket_metadata(bucket).unwrap().balls)
    result = client.delete_bucket(bucket).unwrap()
    data = {"bucket_id": bucket, "deleted": result.deleted, "failed": result.failed, "total": result.total,
            "objects": objects, "keys": result.keys}
    text = (f"removed {_plural(objects, 'object')} ({_plural(result.deleted, 'chunk')}) from {bucket}"
            if not result.failed else
            f"removed {result.deleted} of {_plural(result.total, 'chunk')} of {_plural(objects, 'object')} "
            f"from {bucket} ({result.failed} failed; run rm-bucket again)")
    return Output(text, data, ok=result.failed == 0)


def _peers(client: Client, args: argparse.Namespace) -> Output:
    rows: List[Dict[str, Any]] = []
    for router in client.routers:
        answer = router.get_peers().unwrap()
        for status, peers in (("available", answer.available), ("unavailable", answer.unavailable)):
            rows.extend({"router": router.base_url(), "peer_id": p.peer_id, "hostname": p.hostname, "port": p.port,
                         "protocol": p.protocol, "status": status} for p in peers)
    lines = [f"{r['peer_id']:<24} {r['protocol'] + '://' + r['hostname'] + ':' + str(r['port']):<32} {r['status']}"
             for r in rows]
    return Output("\n".join(lines) if lines else "no peers", rows)


def _health(client: Client, args: argparse.Namespace) -> Output:
    rows: List[Dict[str, Any]] = []
    for router in client.routers:
        answer = router.health()
        if answer.is_ok:
            health = answer.unwrap()
            rows.append({"router": router.base_url(), "router_id": router.router_id, "status": health.status,
                         "available_peers": health.available_peers})
        else:
            error = answer.unwrap_err()
            rows.append({"router": router.base_url(), "router_id": router.router_id, "status": "unreachable",
                         "error": type(error).__name__, "message": _message(error)})
    healthy = all(row["status"] == "ok" for row in rows)
    lines = []
    for row in rows:
        detail = (f"{row['available_peers']} peers available" if "available_peers" in row
                  else f"{row['error']}: {row['message']}")
        lines.append(f"{row['router_id'] or '-'} {row['router']}: {row['status']} ({detail})")
    if not healthy and not args.json:
        # Unhealthy routers are the answer, not a crash: the report still goes to stdout.
        print("mictlanx-sync health: some routers are not healthy", file=sys.stderr)
    return Output("\n".join(lines), rows, ok=healthy)


_HANDLERS: Dict[str, Callable[[Any, argparse.Namespace], Output]] = {
    "put": _put, "get": _get, "ls": _ls, "stat": _stat, "rm": _rm, "rm-bucket": _rm_bucket, "peers": _peers,
    "health": _health,
}
