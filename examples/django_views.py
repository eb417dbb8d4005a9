"""Django views that keep uploads in MictlanX, with one module-level ``Client`` for every request.

Runs as a one-file Django project:

    pip install django
    MICTLANX_URI="mictlanx://mictlanx-router-0@localhost:60666/?protocol=http" \\
        python examples/django_views.py runserver 8000
    curl -T photo.jpg http://localhost:8000/buckets/photos/objects/photo.jpg
    curl -o copy.jpg http://localhost:8000/buckets/photos/objects/photo.jpg

In a project, copy ``client``, ``object_view`` and ``urlpatterns`` into an app: the
minimal settings below only apply when nothing else configured Django. A ``Client`` is
thread-safe and pools its connections, so one per process serves every request thread.

Objects never sit whole in memory, and uploads are not limited to Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB), which applies to ``request.body`` and form
parsing only: the view reads the body as a stream (``request.read``) into a temporary
file and stores it with ``put_file``. A download is written by ``get_to_file`` (verified
before the response starts, so a client never gets a truncated body) and returned as a
``StreamingHttpResponse`` in 1 MB pieces; the temporary file goes when the response is
closed. Put a limit of your own in front (the web server's, or a check of
``CONTENT_LENGTH``) if uploads must be bounded.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import sys
import tempfile
from typing import Iterator

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False, SECRET_KEY="example-only", ROOT_URLCONF=__name__, MIDDLEWARE=[],
        ALLOWED_HOSTS=["localhost", "127.0.0.1", "testserver"],
    )

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_http_methods  # noqa: E402

from mictlanx_sync import Client, errors  # noqa: E402

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"

PIECE = 1_000_000  # bytes read or sent at a time

client = Client(os.environ.get("MICTLANX_URI", DEFAULT_URI))


def error_response(error: errors.MictlanXError) -> JsonResponse:
    """The typed error as JSON, with the HTTP status it stands for."""
    if isinstance(error, errors.NotFoundError):
        status = 404
    elif isinstance(error, errors.ValidationError):
        status = 400
    elif isinstance(error, errors.AlreadyExistsError):
        status = 409
    else:
        status = 502
    return JsonResponse({"error": type(error).__name__, "message": error.message}, status=status)


class TempFileStream:
    """A downloaded file as response pieces; ``close()`` (Django calls it when the response
    is closed, sent or not) removes its temporary directory."""

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


def upload(request: HttpRequest, bucket_id: str, key: str) -> HttpResponse:
    """The request body, streamed to a temporary file, stored with ``put_file``."""
    workdir = tempfile.mkdtemp(prefix="mictlanx-upload-")
    try:
        path = os.path.join(workdir, os.path.basename(key) or "upload")  # the name gives the tags
        with open(path, "wb") as out:
            while piece := request.read(PIECE):  # never request.body: no 2.5 MB limit, no copy in memory
                out.write(piece)
        size = os.path.getsize(path)
        stored = client.put_file(bucket_id, key, path, chunk_size="1MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if stored.is_err:
        return error_response(stored.unwrap_err())
    return JsonResponse({"bucket_id": bucket_id, "key": key, "size": size}, status=201)


def download(bucket_id: str, key: str) -> HttpResponse:
    """The object, verified into a temporary file by ``get_to_file``, streamed back."""
    workdir = tempfile.mkdtemp(prefix="mictlanx-download-")
    got = client.get_to_file(bucket_id, key, output_path=workdir, fullname="object", chunk_size="1MB")
    if got.is_err:
        shutil.rmtree(workdir, ignore_errors=True)
        return error_response(got.unwrap_err())
    path = got.unwrap()
    response = StreamingHttpResponse(TempFileStream(path, workdir),
                                     content_type=mimetypes.guess_type(key)[0] or "application/octet-stream")
    response["Content-Length"] = str(os.path.getsize(path))
    return response


@csrf_exempt
@require_http_methods(["GET", "PUT"])
def object_view(request: HttpRequest, bucket_id: str, key: str) -> HttpResponse:
    """``PUT`` stores the request body as ``bucket_id/key``; ``GET`` streams it back."""
    if request.method == "PUT":
        return upload(request, bucket_id, key)
    return download(bucket_id, key)


urlpatterns = [path("buckets/<str:bucket_id>/objects/<str:key>", object_view)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
