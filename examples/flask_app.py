"""A Flask app that keeps uploads in MictlanX, with one ``Client`` shared by every request thread.

    pip install flask
    MICTLANX_URI="mictlanx://mictlanx-router-0@localhost:60666/?protocol=http" \\
        flask --app examples/flask_app.py run --port 5000
    curl -T photo.jpg http://localhost:5000/buckets/photos/objects/photo.jpg
    curl -o copy.jpg http://localhost:5000/buckets/photos/objects/photo.jpg

A ``Client`` is thread-safe and pools its connections, so the app creates one and every
request uses it. Errors keep their type: ``unwrap()`` raises it and the error handler
turns it into an HTTP status.

Objects never sit whole in memory: an upload is streamed from the request into a
temporary file and stored with ``put_file``; a download is written by ``get_to_file``
(verified before the response starts, so a client never gets a truncated body) and
streamed back in 1 MB pieces, the temporary file removed when the response ends. Flask
sets no upload size limit (``MAX_CONTENT_LENGTH`` adds one).
"""

from __future__ import annotations

import atexit
import mimetypes
import os
import shutil
import tempfile
from typing import Iterator

from flask import Flask, Response, jsonify, request

from mictlanx_sync import Client, errors

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"
PIECE = 1_000_000  # bytes read or sent at a time


class TempFileStream:
    """A downloaded file as response pieces; ``close()`` (called by the server when the
    response ends, is aborted or was never sent) removes its temporary directory."""

    def __init__(self, path: str, workdir: str) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.workdir = workdir

    def __iter__(self) -> Iterator[bytes]:
        try:
            while piece := self.file.read(PIECE):
                yield piece
        finally:
            self.close()  # sent in full (or abandoned): no need to wait for the server's close()

    def close(self) -> None:
        self.file.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def guess_type(key: str) -> str:
    """The type the client stored by default: ``mimetypes``' guess from the key."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def create_app(uri: str | None = None) -> Flask:
    """The app, with its ``Client`` in ``app.extensions["mictlanx"]`` (closed at exit)."""
    app = Flask(__name__)
    client = Client(uri or os.environ.get("MICTLANX_URI", DEFAULT_URI))
    app.extensions["mictlanx"] = client
    atexit.register(client.close)

    @app.put("/buckets/<bucket_id>/objects/<key>")
    def upload(bucket_id: str, key: str) -> tuple[Response, int]:
        rf = request.args.get("rf", default=1, type=int)
        workdir = tempfile.mkdtemp(prefix="mictlanx-upload-")
        try:
            path = os.path.join(workdir, os.path.basename(key) or "upload")  # the name gives the tags
            with open(path, "wb") as out:
                shutil.copyfileobj(request.stream, out, PIECE)  # the body, piece by piece
            client.put_file(bucket_id, key, path, chunk_size="1MB", rf=rf).unwrap()
            size = os.path.getsize(path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return jsonify(bucket_id=bucket_id, key=key, size=size), 201

    @app.get("/buckets/<bucket_id>/objects/<key>")
    def download(bucket_id: str, key: str) -> Response:
        workdir = tempfile.mkdtemp(prefix="mictlanx-download-")
        try:
            path = client.get_to_file(bucket_id, key, output_path=workdir, fullname="object",
                                      chunk_size="1MB").unwrap()
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        size = os.path.getsize(path)
        response = Response(TempFileStream(path, workdir), mimetype=guess_type(key))
        response.content_length = size
        return response

    @app.errorhandler(errors.MictlanXError)
    def mictlanx_error(error: errors.MictlanXError) -> tuple[Response, int]:
        if isinstance(error, errors.NotFoundError):
            status = 404
        elif isinstance(error, errors.ValidationError):
            status = 400
        elif isinstance(error, errors.AlreadyExistsError):
            status = 409
        else:
            status = 502
        return jsonify(error=type(error).__name__, message=error.message), status

    return app
