from django.conf import settings
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    """Refuse bodies over MAX_REQUEST_BYTES with 413 before anything parses them.

    DRF's JSON parser reads the request stream directly, which skips Django's own
    DATA_UPLOAD_MAX_MEMORY_SIZE check, so the limit is enforced here for every route."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return JsonResponse(
                {
                    "error": {
                        "type": "request_too_large",
                        "message": f"Request body is {length} bytes; the limit is {limit} bytes.",
                    }
                },
                status=413,
            )
        return self.get_response(request)
