# The ASGI app of tests/wire/http2_h2c_upgrade.rs, served by hypercorn (PyPI), which answers an
# HTTP/1.1 `Upgrade: h2c` request with 101 and HTTP/2: 200 with a short text, 404 on /missing.

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"hello over " + scope["http_version"].encode() + b"\n"
    await send({"type": "http.response.start", "status": 200 if scope["path"] != "/missing" else 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
