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
"""

from __future__ import annotations

import os
import sys

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False, SECRET_KEY="example-only", ROOT_URLCONF=__name__, MIDDLEWARE=[],
        ALLOWED_HOSTS=["localhost", "127.0.0.1", "testserver"],
    )

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_http_methods  # noqa: E402

from mictlanx_sync import Client, errors  # noqa: E402

DEFAULT_URI = "mictlanx://mictlanx-router-0@localhost:60666/?protocol=http&api_version=4&http2=0"

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


@csrf_exempt
@require_http_methods(["GET", "PUT"])
def object_view(request: HttpRequest, bucket_id: str, key: str) -> HttpResponse:
    """``PUT`` stores the request body as ``bucket_id/key``; ``GET`` returns it."""
    if request.method == "PUT":
        stored = client.put(bucket_id, key, request.body, chunk_size="1MB")
        if stored.is_err:
            return error_response(stored.unwrap_err())
        return JsonResponse({"bucket_id": bucket_id, "key": key, "size": len(request.body)}, status=201)
    got = client.get(bucket_id, key, chunk_size="1MB")
    if got.is_err:
        return error_response(got.unwrap_err())
    response = got.unwrap()
    return HttpResponse(response.data.tobytes(), content_type=response.metadatas[0].content_type)


urlpatterns = [path("buckets/<str:bucket_id>/objects/<str:key>", object_view)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
