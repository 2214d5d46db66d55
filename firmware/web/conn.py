# The HTTP connection layer in front of Microdot: every request is bounded in size and time and
# the number of connections served at once is capped, so that slow, silent or oversized clients
# can hold neither the few sockets of the ESP32 nor its heap, and the MEP link keeps its share
# of the event loop.
#  - at most MAX_CONN connections are served at once; the next one gets a 503 at once
#  - the request line (MAX_LINE bytes), the headers (MAX_HEAD bytes in all, MAX_HEADERS lines)
#    and a body of up to MAX_BODY bytes must all arrive within REQUEST_MS of the connection
#    opening, else 408 and the connection is closed. A longer body (only the OTA upload takes
#    one) streams: each read may wait READ_MS.
#  - a whole exchange, writing the response included, is cut after EXCHANGE_MS (STREAM_MS for
#    a streamed upload)
#  - one request per connection: Microdot answers HTTP/1.0 and closes, so no connection idles
#    in keep-alive
# Microdot then parses the request from the bytes read here (Body) and writes the response.
from compat import asyncio, ticks_ms, ticks_diff

MAX_CONN = 6
REQUEST_MS = 5000
READ_MS = 10000
EXCHANGE_MS = 30000
STREAM_MS = 300000
MAX_LINE = 1024
MAX_HEAD = 4096
MAX_HEADERS = 32
MAX_BODY = 8192
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
# on every response (web/server.py adds them to Microdot's); PAGE_SECURITY on HTML pages too
# (not on the JSON the dashboard polls: ~300 bytes less each time)
SECURITY = (('X-Content-Type-Options', 'nosniff'), ('Referrer-Policy', 'same-origin'))
PAGE_SECURITY = (('Content-Security-Policy', CSP), ('X-Frame-Options', 'DENY'))


class Body:
    """The request as Microdot reads it: the head and a small body read here within the
    limits, then (for a streamed upload) the socket, each read bounded by READ_MS."""

    def __init__(self, head, rest, reader):
        self.head = head
        self.pos = 0
        self.rest = rest
        self.reader = reader

    async def readline(self):
        h = self.head
        p = self.pos
        i = h.find(b'\n', p)
        i = len(h) if i < 0 else i + 1
        self.pos = i
        return h[p:i]

    async def readexactly(self, n):
        b = self.rest              # Microdot asks for small bodies only: read_request() read it
        self.rest = b''
        return b

    async def read(self, n=-1):
        b = self.rest
        if b:
            if n < 0 or n >= len(b):
                self.rest = b''
                return b
            self.rest = b[n:]
            return b[:n]
        try:
            return await asyncio.wait_for(self.reader.read(n), READ_MS / 1000)
        except asyncio.TimeoutError:
            raise OSError(110, 'the upload stalled')


async def _read(reader, t0):
    left = REQUEST_MS - ticks_diff(ticks_ms(), t0)
    if left <= 0:
        return None
    try:
        return await asyncio.wait_for(reader.read(512), left / 1000)
    except asyncio.TimeoutError:
        return None


def _length(head):
    """Content-Length of the head (0 without one), or (status, text) for a head refused."""
    lines = head.split(b'\n')
    p = lines[0].split()
    if len(p) != 3 or not p[2].startswith(b'HTTP/'):
        return 400, 'malformed request line'
    try:
        head.decode()
        i = p[1].find(b'%')
        while i >= 0:                      # Microdot's URL decoding raises on a bad escape
            int(p[1][i + 1:i + 3], 16)
            i = p[1].find(b'%', i + 3)
    except (UnicodeError, ValueError):
        return 400, 'malformed request (not UTF-8, or a bad %-escape in the URL)'
    if len(lines) - 3 > MAX_HEADERS:
        return 431, 'too many header lines (max %d)' % MAX_HEADERS
    n = 0
    for ln in lines[1:]:
        i = ln.find(b':')
        if i < 0:
            if ln.strip():
                return 400, 'malformed header line'
            continue
        name = ln[:i].strip().lower()
        if name == b'content-length':
            v = ln[i + 1:].strip()
            if not v.isdigit() or len(v) > 9:
                return 400, 'bad Content-Length'
            n = int(v)
        elif name == b'transfer-encoding':
            return 411, 'send the body with a Content-Length (no chunked encoding)'
    return n


async def read_request(reader, t0):
    """(head, rest of the bytes read) of a complete request, or (status, text) when it is
    refused, or None when the client went away or was too slow (408)."""
    buf = b''
    while True:
        end = buf.find(b'\r\n\r\n')
        if end >= 0:
            end += 4
            break
        end = buf.find(b'\n\n')
        if end >= 0:
            end += 2
            break
        nl = buf.find(b'\n')
        if nl > MAX_LINE or (nl < 0 and len(buf) > MAX_LINE):
            return 414, 'request line too long (max %d bytes)' % MAX_LINE
        if len(buf) > MAX_HEAD:
            return 431, 'request headers too large (max %d bytes)' % MAX_HEAD
        b = await _read(reader, t0)
        if b is None:
            return 408, 'request not complete within %d s' % (REQUEST_MS // 1000)
        if not b:
            return None
        buf += b
    if buf.find(b'\n') > MAX_LINE:
        return 414, 'request line too long (max %d bytes)' % MAX_LINE
    if end > MAX_HEAD + 4:
        return 431, 'request headers too large (max %d bytes)' % MAX_HEAD
    head = buf[:end]
    n = _length(head)
    if isinstance(n, tuple):
        return n
    rest = buf[end:]
    if 0 < n <= MAX_BODY:
        parts = [rest[:n]]
        got = len(parts[0])
        while got < n:
            b = await _read(reader, t0)
            if b is None:
                return 408, 'request body not complete within %d s' % (REQUEST_MS // 1000)
            if not b:
                return None
            b = b[:n - got]
            parts.append(b)
            got += len(b)
        rest = b''.join(parts)
    return head, rest, n


async def reply(reader, writer, status, text):
    """A short plain-text answer from this layer; then what the client still sends is
    read for a moment, so that closing does not reset the connection before it is read."""
    body = (text + '\n').encode()
    hdr = ['HTTP/1.0 %d Refused\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: '
           '%d\r\nCache-Control: no-store\r\nConnection: close\r\n' % (status, len(body))]
    if status == 503:
        hdr.append('Retry-After: 2\r\n')
    for k, v in SECURITY:
        hdr.append('%s: %s\r\n' % (k, v))
    hdr.append('\r\n')
    try:
        await asyncio.wait_for(writer.awrite(''.join(hdr).encode() + body), 2)
        for _ in range(1 if status == 503 else 8):   # reads of at most 0.1 s (a 503 holds
            if not await asyncio.wait_for(reader.read(512), 0.1):   # its socket briefly)
                break
    except Exception:       # the client is gone or does not read: nothing more to do
        pass


def handler(app, streamed, log=None):
    """The asyncio.start_server callback serving Microdot `app` within the limits above.
    streamed(path): True for paths whose body may exceed MAX_BODY (they stream).
    app.conn_stats: [connections served now, the most at once, refused with 503]."""
    busy = app.conn_stats = [0, 0, 0]

    async def conn(reader, writer):
        if not hasattr(writer, 'awrite'):              # CPython
            from web.cpywriter import Writer
            writer = Writer(writer)
        t0 = ticks_ms()
        if busy[0] >= MAX_CONN:
            busy[2] += 1
            await reply(reader, writer, 503, 'busy: too many connections, try again in a '
                                             'few seconds')
            await _close(writer)
            return
        busy[0] += 1
        if busy[0] > busy[1]:
            busy[1] = busy[0]
        try:
            r = await read_request(reader, t0)
            if r is None:
                return
            if len(r) == 2:
                await reply(reader, writer, r[0], r[1])
                return
            head, rest, n = r
            limit = EXCHANGE_MS
            if n > MAX_BODY:
                path = head[:head.find(b'\n')].split()[1].split(b'?')[0].decode()
                if not streamed(path):
                    await reply(reader, writer, 413, 'request body too large (max %d bytes)'
                                % MAX_BODY)
                    return
                limit = STREAM_MS
            await asyncio.wait_for(app.handle_request(Body(head, rest, reader), writer),
                                   limit / 1000)
        except asyncio.CancelledError:   # the server stops: this connection just ends
            pass
        except Exception as e:   # a timeout, a reset, a bug: this connection ends, not the server
            if log is not None and not isinstance(e, (OSError, asyncio.TimeoutError)):
                log('web: connection error %r' % (e,))
        finally:
            busy[0] -= 1
            await _close(writer)
    return conn


async def _close(writer):
    try:
        await writer.aclose()
    except Exception:
        pass
