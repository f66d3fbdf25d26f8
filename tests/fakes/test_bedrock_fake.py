"""FakeBedrock on its own: its SigV4 check accepts what botocore signs and refuses what AWS
would (no signature, a tampered body, another service or region, an old date, a missing
session token), and its event-stream frames are what botocore's parser reads back."""

import json
from datetime import UTC, datetime, timedelta

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from tests.fakes import FakeBedrock

KEY = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}).encode()


def signed(url: str, body: bytes = BODY, *, service: str = "bedrock", region: str = "us-east-1",
           token: str | None = None, when: datetime | None = None) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(*KEY.split(":"), token), service, region)
    if when is None:
        signer.add_auth(request)
    else:  # botocore signs "now": sign an old request by hand through its own steps
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        signer._inject_signature_to_request(request, signature)
    return dict(request.headers.items())


def test_botocore_signed_requests_pass_and_tampered_ones_do_not():
    with FakeBedrock(api_key=KEY) as fake:
        url = f"{fake.base_url}/model/amazon.nova-pro-v1:0/converse"
        ok = httpx.post(url, content=BODY, headers=signed(url))
        assert ok.status_code == 200 and fake.verified == 1, ok.text
        tampered = httpx.post(url, content=BODY.replace(b"Hello", b"Hullo"), headers=signed(url))
        assert tampered.status_code == 403
        assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
        missing = httpx.post(url, content=BODY, headers={"Content-Type": "application/json"})
        assert missing.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
        for headers in (signed(url, service="s3"), signed(url, region="eu-west-1"),
                        signed(url, when=datetime.now(UTC) - timedelta(hours=1))):
            refused = httpx.post(url, content=BODY, headers=headers)
            assert refused.status_code == 403, refused.text
        assert fake.verified == 1


def test_temporary_credentials_need_their_token():
    with FakeBedrock(api_key=f"{KEY}:SESSIONTOKEN") as fake:
        url = f"{fake.base_url}/model/amazon.nova-pro-v1:0/converse"
        assert httpx.post(url, content=BODY, headers=signed(url)).status_code == 403
        assert httpx.post(url, content=BODY, headers=signed(url, token="SESSIONTOKEN")).status_code == 200


def test_stream_frames_decode_with_botocore():
    with FakeBedrock(api_key=KEY, reply="one two three", stream_chunks=3) as fake:
        url = f"{fake.base_url}/model/amazon.nova-pro-v1:0/converse-stream"
        response = httpx.post(url, content=BODY, headers=signed(url))
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    events = [(m.headers[":event-type"], json.loads(m.payload)) for m in buffer]
    assert [name for name, _ in events] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                           "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert "".join(e["delta"]["text"] for name, e in events if name == "contentBlockDelta") == "one two three"
    assert events[-1][1]["usage"]["outputTokens"] == 3
