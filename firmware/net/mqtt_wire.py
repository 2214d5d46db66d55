# The MQTT client: micropython-lib's umqtt.simple (frozen in the stock ESP32 image, or
# installed by flash.py; the tests run the release on PyPI), used through its public API
# and subclassed where the firmware needs more, as micropython-lib's own umqtt.robust
# does. What umqtt.simple cannot do is here:
# - aconnect(): the TCP connect, the TLS handshake and the wait for CONNACK never block the
#   event loop (umqtt's connect() blocks on each); the CONNECT is built from the client's
#   own settings (constructor, set_last_will()).
# - Stream: the socket the client reads and writes; umqtt's setblocking(True) (after
#   check_msg) becomes a short time-out, so a half-received packet cannot stall the loop,
#   and a CPython socket gets MicroPython's stream API (read(n) -> None when nothing is
#   there). It notes when something was last received (keep-alive).
# - publish() at QoS 0 writes the PUBLISH in one piece (umqtt writes four).

from compat import ticks_ms, ticks_diff, sleep_ms, MICROPYTHON
from net.tcp import open_tcp, again, tls_wrap, handshake, tls_error
from umqtt.simple import MQTTClient, MQTTException

REFUSED = {1: 'unacceptable protocol', 2: 'client id rejected', 3: 'server unavailable',
           4: 'bad user name or password', 5: 'not authorized'}


def refused_words(e):
    """'broker refused: <reason>' for an MQTTException carrying a CONNACK code, else None."""
    if isinstance(e, MQTTException) and e.args and e.args[0] in REFUSED:
        return 'broker refused: ' + REFUSED[e.args[0]]
    return None


def _str(x):
    if isinstance(x, str):
        x = x.encode()
    return bytes((len(x) >> 8, len(x) & 0xFF)) + x


def _head(kind, n):
    """A packet's fixed header: its type and flags, then the remaining length n (MQTT
    3.1.1, 2.2.3: 7 bits a byte, least significant first)."""
    head = bytearray((kind,))
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | 0x80 if n else b)
        if not n:
            return head


def connect_packet(client_id, keepalive, will_topic, will_msg, user=None, password=None,
                   will_retain=True):
    """MQTT 3.1.1 CONNECT (clean session; a will at QoS 0, retained unless told)."""
    flags = 0x02
    payload = _str(client_id)
    if will_topic:
        flags |= 0x04 | (0x20 if will_retain else 0)
        payload += _str(will_topic) + _str(will_msg)
    if user:
        flags |= 0xC0
        payload += _str(user) + _str(password or '')
    body = _str('MQTT') + bytes((4, flags, keepalive >> 8, keepalive & 0xFF)) + payload
    return bytes(_head(0x10, len(body))) + body


def publish_packet(topic, payload, retain=False):
    """A QoS 0 PUBLISH (MQTT 3.1.1, 3.3) of str or bytes topic and payload, in one piece."""
    t = _str(topic)
    m = payload.encode() if isinstance(payload, str) else payload
    return b''.join((_head(0x31 if retain else 0x30, len(t) + len(m)), t, m))


class Stream:
    """The client's socket: setblocking(True) becomes a time-out, reads are timed. raw: the
    TCP socket under a TLS one (MicroPython's TLS socket has no settimeout: the time-out
    is set on the socket below it)."""

    def __init__(self, s, timeout, raw=None):
        self.s = s
        self.raw = raw if raw is not None else s
        self.t = timeout
        self.rx = ticks_ms()
        self.settimeout(timeout)

    def settimeout(self, t):
        if MICROPYTHON:
            self.raw.settimeout(t)
        else:
            self.s.settimeout(t)

    def setblocking(self, flag):
        self.settimeout(self.t if flag else 0)

    def read(self, n):
        if MICROPYTHON:
            d = self.s.read(n)
        else:
            d = b''
            while len(d) < n:
                try:
                    c = self.s.recv(n - len(d))
                except OSError as e:
                    if again(e):
                        if d:
                            continue
                        return None
                    if isinstance(e, TimeoutError) or type(e).__name__ == 'timeout':
                        raise OSError(110, 'ETIMEDOUT')
                    raise
                if not c:
                    break
                d += c
        if d:
            self.rx = ticks_ms()
        return d

    def write(self, buf, n=None):
        if isinstance(buf, str):
            buf = buf.encode()
        if n is not None:
            buf = buf[:n]
        if MICROPYTHON:
            return self.s.write(buf)
        try:
            self.s.sendall(bytes(buf))
        except OSError as e:
            if isinstance(e, TimeoutError) or type(e).__name__ == 'timeout':
                raise OSError(110, 'ETIMEDOUT')
            raise
        return len(buf)

    def close(self):
        self.s.close()


class Client(MQTTClient):
    """umqtt.simple's MQTTClient; connect with `await aconnect(...)`, not connect()."""
    io_timeout = 0.25      # s, every read and write once connected

    async def aconnect(self, ip, ctx, step_ms):
        """Connect to ip (self.server, the host name, is what TLS verifies) with the TLS
        context ctx or None, send CONNECT and wait for CONNACK, each step at most step_ms,
        never blocking the loop. Raises MQTTException(code) when the broker says no,
        net.tcp.TLSError when TLS fails (in words), OSError otherwise."""
        s = await open_tcp(ip, self.port, step_ms)
        raw = s
        st = None
        self._shaking = ctx is not None
        try:
            if ctx is not None:
                s = tls_wrap(s, self.server, ctx)
                await handshake(s, step_ms)
            st = Stream(s, self.io_timeout, raw)
            await self._connack(st, step_ms)
        except Exception as e:
            try:
                (st or s).close()
            except Exception:
                pass
            raise tls_error(e, self._shaking) if ctx is not None else e
        st.settimeout(self.io_timeout)
        self.sock = st

    async def _connack(self, st, step_ms):
        pkt = connect_packet(self.client_id, self.keepalive, self.lw_topic, self.lw_msg,
                             self.user, self.pswd, self.lw_retain)
        st.setblocking(False)
        t0 = ticks_ms()
        if MICROPYTHON:
            # a non-blocking write: the TLS handshake runs in it, a step at a time
            while pkt:
                n = st.write(pkt)
                if n:
                    pkt = pkt[n:]
                    continue
                if ticks_diff(ticks_ms(), t0) > step_ms:
                    raise OSError(110, 'TLS handshake time-out')
                await sleep_ms(5)
        else:
            st.settimeout(self.io_timeout)
            st.write(pkt)
            st.setblocking(False)
        self._shaking = False       # the CONNECT went out: TLS is up
        ack = b''
        while len(ack) < 4:
            d = st.read(4 - len(ack))
            if d == b'':
                raise OSError(104, 'connection closed by the broker')
            if d:
                ack += d
                continue
            if ticks_diff(ticks_ms(), t0) > step_ms:
                raise OSError(110, 'no CONNACK from the broker')
            await sleep_ms(20)
        if ack[0] != 0x20 or ack[1] != 2:
            raise OSError(71, 'not an MQTT broker (bad CONNACK)')
        if ack[3]:
            raise MQTTException(ack[3])

    def publish(self, topic, msg, retain=False, qos=0):
        if qos:
            return super().publish(topic, msg, retain, qos)
        # built whole before the one write: out of memory here sends nothing
        self.sock.write(publish_packet(topic, msg, retain))

    def heard(self):
        """ticks_ms() of the last byte received."""
        return self.sock.rx

    def abort(self):
        """Drop the connection without DISCONNECT (the broker sends the last will)."""
        self.sock.close()
