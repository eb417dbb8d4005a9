"""A Flask app that keeps uploads in MictlanX, with one ``Client`` shared by every request thread.

    pip install flask
    MICTLANX_URI="mictlanx://mictlanx-router-0@localhost:60666/?protocol=http" \\
        flask --app examples/flask_app.py run --port 5000
    curl -T photo.jpg http://localhost:5000/buckets/photos/objects/photo.jpg
    curl -o copy.jpg http://localhost:5000/buckets/photos/objects/photo.jpg

A ``Client`` is thread-safe and pools its connections, so the app creates one and every
request uses it. Errors keep their type: ``unwrap()`` raises it and the error handler
turns it into an HTTP status.
"""

from __future__ import annotations

import atexit
import os

from flask import Flask, Response, jsonify, request

from mictlanx_sync import Client, errors

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"


def create_app(uri: str | None = None) -> Flask:
    """The app, with its ``Client`` in ``app.extensions["mictlanx"]`` (closed at exit)."""
    app = Flask(__name__)
    client = Client(uri or os.environ.get("MICTLANX_URI", DEFAULT_URI))
    app.extensions["mictlanx"] = client
    atexit.register(client.close)

    @app.put("/buckets/<bucket_id>/objects/<key>")
    def upload(bucket_id: str, key: str) -> tuple[Response, int]:
        data = request.get_data()
        rf = request.args.get("rf", default=1, type=int)
        client.put(bucket_id, key, data, chunk_size="1MB", rf=rf).unwrap()
        return jsonify(bucket_id=bucket_id, key=key, size=len(data)), 201

    @app.get("/buckets/<bucket_id>/objects/<key>")
    def download(bucket_id: str, key: str) -> Response:
        got = client.get(bucket_id, key, chunk_size="1MB").unwrap()
        return Response(got.data.tobytes(), mimetype=got.metadatas[0].content_type)

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
