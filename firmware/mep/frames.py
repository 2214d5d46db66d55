# MEP frames: request encoding and an incremental response decoder.
#
# Request:  LEN(2 BE) | MSG | SEQ(4 BE) | DIGEST(8)        LEN = len(MSG) + 12
# Response: LEN(2 BE) | STATUS | payload | TRAILER(8)?     LEN = bytes after LEN
#   read OK:   STATUS=00 | COUNT(2 BE) | COUNT table bytes | TRAILER(8)   (LEN = COUNT + 11)
#   0x0C:      STATUS=0C | expected SEQ(4 BE) [| TRAILER(8)]
# Alert:    00 00 (a zero-length packet, unsolicited)
# The trailer's algorithm is unknown: it is kept and reported, never checked nor faked.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mep.digest import digest

TRAILER_LEN = const(8)
MAX_TABLE = const(512)            # the max-length every full read asks for
MAX_LEN = const(523)              # LEN of the largest response: 1 + 2 + 512 + 8
MAX_FRAME = const(525)            # bytes of the largest response frame, LEN included

# Decoder events (first item of each event tuple).
EV_FRAME = const(1)               # (EV_FRAME, Response)
EV_ALERT = const(2)               # (EV_ALERT, None)
EV_ERROR = const(3)               # (EV_ERROR, message)

# What the decoder expects the next response to answer.
EXPECT_ANY = const(0)
EXPECT_READ = const(1)
EXPECT_WRITE = const(2)

STATUS_OK = const(0x00)
STATUS_ONP = const(0x04)          # operation not possible; on a BT07 write: bad PSEQ
STATUS_AUTH = const(0x0B)
STATUS_SEQ = const(0x0C)
STATUS_RSTL = const(0x10)         # response too large
MAX_STATUS = const(0x12)          # the highest C12.18/C12.22 response code

# C12.18 / C12.22 response codes; 0x0B and 0x0C have their MEP meaning (the C12.22 names
# would be "security mechanism error" and "unknown application title").
STATUS_TEXT = (
    'ok',                                   # 00 ok
    'unrecognised request',                 # 01 err
    'unsupported request',                  # 02 sns
    'no permission for this request',       # 03 isc
    'operation not possible',               # 04 onp
    'table operation not possible',         # 05 iar
    'device busy',                          # 06 bsy
    'data not ready',                       # 07 dnr
    'data locked',                          # 08 dlk
    'renegotiate request',                  # 09 rno
    'invalid service sequence state',       # 0A isss
    'authentication failed: check the MBK',  # 0B
    'invalid sequence number',              # 0C
    'network timeout',                      # 0D nett
    'network not reachable',                # 0E netr
    'request too large',                    # 0F rqtl
    'response too large',                   # 10 rstl
    'segmentation not possible',            # 11 sgnp
    'segmentation error',                   # 12 sgerr
)


def status_text(status):
    if 0 <= status <= MAX_STATUS:
        return STATUS_TEXT[status]
    return 'unknown status 0x%02x' % status


class FrameError(ValueError):
    pass


def encode_request(message, seq, key):
    """Full request frame for MSG `message` with sequence number `seq` under the 16-byte key."""
    n = len(message) + 12
    if n > 0xFFFF:
        raise FrameError('message too long: %d bytes' % len(message))
    if not 0 <= seq <= 0xFFFFFFFF:
        raise FrameError('sequence number out of range: %r' % seq)
    body = bytes(message) + bytes(((seq >> 24) & 0xFF, (seq >> 16) & 0xFF,
                                   (seq >> 8) & 0xFF, seq & 0xFF))
    return bytes((n >> 8, n & 0xFF)) + body + digest(body, key)


class Request:
    """A request frame taken apart (used by the simulator and to spot looped-back bytes)."""

    def __init__(self, message, seq, digest_bytes, raw):
        self.message = message
        self.seq = seq
        self.digest = digest_bytes
        self.raw = raw

    def digest_ok(self, key):
        return digest(self.message + self.seq.to_bytes(4, 'big'), key) == self.digest


def parse_request(raw):
    raw = bytes(raw)
    if len(raw) < 14:
        raise FrameError('request too short: %d bytes' % len(raw))
    n = (raw[0] << 8) | raw[1]
    if n != len(raw) - 2 or n < 13:
        raise FrameError('request LEN %d does not match its %d bytes' % (n, len(raw)))
    return Request(raw[2:-12], int.from_bytes(raw[-12:-8], 'big'), raw[-8:], raw)


class Response:
    """A response frame. `data` is the table data of a read, else the bytes after STATUS
    without the trailer. `trailer` is the 8-byte trailer or None when the frame had none."""

    def __init__(self, status, data, trailer, raw, count=None):
        self.status = status
        self.data = data
        self.trailer = trailer
        self.raw = raw
        self.count = count

    def expected_seq(self):
        """The sequence number a 0x0C response says the meter expects."""
        if self.status != STATUS_SEQ or len(self.data) < 4:
            raise FrameError('not a sequence-number response')
        d = self.data
        return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]

    def __repr__(self):
        return '<Response status=0x%02x data=%d bytes>' % (self.status, len(self.data))


def parse_response(frame, expect=EXPECT_ANY):
    """Check one complete frame (LEN included) and return a Response.
    Raises FrameError with the reason when the frame cannot be a valid response."""
    n = (frame[0] << 8) | frame[1]
    if n + 2 != len(frame):
        raise FrameError('LEN %d does not match %d bytes' % (n, len(frame) - 2))
    status = frame[2]
    if status > MAX_STATUS and n != 1 and n != 1 + TRAILER_LEN:
        raise FrameError('unknown status 0x%02x' % status)
    raw = bytes(frame)
    if status == STATUS_OK and expect != EXPECT_WRITE and n >= 3 + TRAILER_LEN:
        count = (frame[3] << 8) | frame[4]
        if count + 3 + TRAILER_LEN == n:
            return Response(status, raw[5:5 + count], raw[-TRAILER_LEN:], raw, count)
        if expect == EXPECT_READ:
            raise FrameError('COUNT %d does not match LEN %d' % (count, n))
    if status == STATUS_OK and expect == EXPECT_READ:
        raise FrameError('read response too short (LEN %d)' % n)
    # Write acknowledgements and errors: STATUS [payload] [TRAILER]. Whether they carry a
    # trailer is not known; a payload is only known for 0x0C (4 bytes).
    plen = 4 if status == STATUS_SEQ else 0
    if n == 1 + plen:
        return Response(status, raw[3:], None, raw)
    if n == 1 + plen + TRAILER_LEN:
        return Response(status, raw[3:-TRAILER_LEN], raw[-TRAILER_LEN:], raw)
    raise FrameError('LEN %d impossible for status 0x%02x' % (n, status))


class Decoder:
    """Incremental response decoder. Feed it bytes in any chunking; it returns events.

    Never buffers more than one maximum-size frame. A candidate that fails a check loses its
    first byte and the rest is scanned again, so a real frame behind garbage is still found.
    Call `idle()` when the line has been quiet for a while: a partial frame is then garbage.
    """

    def __init__(self):
        self.buf = bytearray(MAX_FRAME)
        self.n = 0
        self.expect = EXPECT_ANY
        self.dropped = 0          # bytes thrown away since the last good frame
        self.resyncs = 0          # how many times garbage was skipped

    def pending(self):
        return self.n

    def missing(self):
        """Bytes still to come for the frame being received, when its LEN is in (else 0)."""
        if self.n < 2:
            return 0
        n = (self.buf[0] << 8) | self.buf[1]
        if n == 0 or n > MAX_LEN:
            return 0
        return max(0, n + 2 - self.n)

    def reset(self):
        self.n = 0
        self.dropped = 0

    def feed(self, data):
        events = []
        mv = memoryview(data)
        i = 0
        total = len(data)
        while i < total:
            room = MAX_FRAME - self.n
            take = min(room, total - i)
            self.buf[self.n:self.n + take] = mv[i:i + take]
            self.n += take
            i += take
            self._scan(events, False)
        return events

    def idle(self):
        """The line went quiet: whatever is buffered cannot complete."""
        events = []
        self._scan(events, True)
        return events

    def _drop(self, k):
        buf = self.buf
        n = self.n
        buf[0:n - k] = buf[k:n]
        self.n = n - k

    def _garbage(self, events, why, k):
        # One error event per run of garbage, however many bytes it takes to get past it.
        self._drop(k)
        if self.dropped == 0:
            self.resyncs += 1
            events.append((EV_ERROR, why))
        self.dropped += k

    def _probe(self, k):
        """Is there a valid frame at offset k? 1 yes, 0 no, None: not enough bytes yet."""
        buf = self.buf
        if self.n < k + 2:
            return None
        n = (buf[k] << 8) | buf[k + 1]
        if n == 0 or n > MAX_LEN:
            return 0
        if self.n >= k + 3 and buf[k + 2] > MAX_STATUS:
            return 0                    # look-ahead: only known codes make a frame
        if self.n < k + 2 + n:
            return None
        try:
            parse_response(memoryview(buf)[k:k + 2 + n], self.expect)
            return 1
        except FrameError:
            return 0

    def _zero_pair(self, quiet):
        """The buffer starts with 00 00: an alert (True), a stray 00 before a frame 00 xx
        (False), or undecided yet (None). Alerts come between frames and alone; inside
        garbage, a 00 00 only counts when a valid frame (or nothing) follows it."""
        if self.n == 2:
            return True if quiet else None
        after = self._probe(2)
        shifted = self._probe(1) if self.buf[2] else 0
        if shifted == 1 and after != 1:
            return False
        if after == 1:
            return True
        if not quiet and (after is None or shifted is None):
            return None
        if self.dropped and after == 0:
            return False
        return True

    def _ends_burst(self, k):
        """Nothing follows offset k in the buffer, or an alert (00 00) or a valid frame."""
        if self.n == k:
            return True
        if self.n >= k + 2 and self.buf[k] == 0 and self.buf[k + 1] == 0:
            return True
        return self._probe(k) == 1

    def _scan(self, events, quiet):
        buf = self.buf
        while self.n >= 2 or (quiet and self.n):
            if self.n < 2:
                self._garbage(events, 'stray byte 0x%02x' % buf[0], 1)
                continue
            n = (buf[0] << 8) | buf[1]
            if n == 0:
                verdict = self._zero_pair(quiet)
                if verdict is None:
                    return                      # wait for more bytes to decide
                if verdict:
                    self._drop(2)
                    self.dropped = 0
                    events.append((EV_ALERT, None))
                else:
                    self._garbage(events, 'stray 0x00 before a frame', 1)
                continue
            if n > MAX_LEN:
                self._garbage(events, 'LEN %d too large' % n, 1)
                continue
            if self.n >= 3 and buf[2] > MAX_STATUS and n != 1 and n != 1 + TRAILER_LEN:
                self._garbage(events, 'unknown status 0x%02x' % buf[2], 1)
                continue
            if self.n < n + 2:
                if quiet:
                    self._garbage(events, 'incomplete frame: %d of %d bytes' % (self.n, n + 2), 1)
                    continue
                return
            try:
                resp = parse_response(memoryview(buf)[:n + 2], self.expect)
            except FrameError as e:
                self._garbage(events, str(e), 1)
                continue
            if quiet and self.dropped and not self._ends_burst(n + 2):
                # found by skipping garbage, with more bytes behind it in the same burst: a
                # meter answers a request with one frame and then waits, so this is a piece
                # of the garbage (a cut answer's payload holds 00 01 xx often enough)
                self._garbage(events, 'a frame inside garbage', 1)
                continue
            self._drop(n + 2)
            self.dropped = 0
            events.append((EV_FRAME, resp))
