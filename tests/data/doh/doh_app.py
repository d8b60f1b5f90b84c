# A DNS-over-HTTPS server for tests/data/doh/make_doh.sh, served by hypercorn (PyPI) in the
# clear: RFC 8484's GET (the query in the `dns` parameter, base64url without padding) and POST
# (an `application/dns-message` body) on /dns-query, answered with an `application/dns-message`
# response: the query's id and question, QR and RA set, and one A record (192.0.2.53, TTL 300)
# for a type A question, none for another type. Anything else is a 404.
import base64
import struct


def answer(query):
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    # The question: the name's labels, then type and class.
    at = 12
    while query[at]:
        at += 1 + query[at]
    at += 1
    qtype, qclass = struct.unpack("!HH", query[at:at + 4])
    question = query[12:at + 4]
    records = b""
    if qtype == 1:
        # The name as a pointer to the question's (offset 12), A, IN, TTL, 4 bytes.
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([192, 0, 2, 53])
    head = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080, 1,
                       1 if records else 0, 0, 0)
    return head + question + records


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    query = None
    if scope["path"] == "/dns-query" and scope["method"] == "GET":
        for p in scope["query_string"].split(b"&"):
            if p.startswith(b"dns="):
                v = p[4:].decode()
                query = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
    elif scope["path"] == "/dns-query" and scope["method"] == "POST":
        query = body
    if query is None:
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"not here\n"})
        return
    reply = answer(query)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/dns-message"),
                            (b"cache-control", b"max-age=300")]})
    await send({"type": "http.response.body", "body": reply})
