"""AWS Signature Version 4 for the bedrock provider, through botocore's own signer (never by
hand): a provider's key is ``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` or, with temporary credentials,
``ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`` (wire-formats-2 §6: the service signs as
``bedrock``, the runtime and the control plane alike).

The request is signed as it goes on the wire: the URL exactly as the HTTP client sends it (the
engine's aiohttp sends a model id's ``:`` unencoded and keeps ``%2F``), and every header handed
to the client except those SigV4 leaves out (``user-agent`` …); ``host`` is signed from the URL.
What comes back are the headers to send: the ones given plus ``Authorization``,
``X-Amz-Date`` and, for temporary credentials, ``X-Amz-Security-Token``."""

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "bedrock"  # the signing name of bedrock-runtime and of the bedrock control plane
KEY_FORMAT = "ACCESS_KEY_ID:SECRET_ACCESS_KEY (or ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN)"


def aws_credentials(api_key: str) -> tuple[str, str, str | None] | None:
    """(access key id, secret access key, session token or None) of a provider key, or None when
    the key is not in that form. Secret keys and session tokens are base64 and never hold ':'."""
    parts = api_key.strip().split(":")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def sigv4_headers(*, method: str, url: str, headers: dict[str, str], body: bytes, api_key: str,
                  region: str) -> dict[str, str]:
    """``headers`` with the SigV4 signature of the request added. ValueError when ``api_key``
    is not an access key pair (see :data:`KEY_FORMAT`)."""
    credentials = aws_credentials(api_key)
    if credentials is None:
        raise ValueError(f"the key must be {KEY_FORMAT}")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(*credentials), SERVICE, region).add_auth(request)
    return dict(request.headers.items())
