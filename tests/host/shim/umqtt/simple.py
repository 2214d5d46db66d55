# Host (CPython) stand-in for micropython-lib's umqtt.simple (1.8.0, as shipped with
# MicroPython 1.29): same constructor, same methods, same blocking-socket behaviour.
#
# Written from the MQTT 3.1.1 specification on a raw socket rather than on paho: the
# firmware's time-outs, partial reads and the "check_msg() leaves the socket blocking"
# quirk only get exercised if the socket underneath behaves like MicroPython's. The
# socket is wrapped in _MpSocket, which gives CPython sockets MicroPython's stream API:
# read(n) (returns None on a non-blocking socket with nothing pending, b'' at EOF, raises
# OSError(ETIMEDOUT) on a time-out) and write(buf, n).
# Only QoS 0 publishing and QoS 0/1 delivery are implemented (what umqtt.simple does).
import socket
import struct

ETIMEDOUT = 110


class MQTTException(Exception):
    pass


class _MpSocket:
    def __init__(self, s):
        self._s = s

    def settimeout(self, t):
        self._s.settimeout(t)

    def setblocking(self, flag):
        self._s.setblocking(flag)

    def fileno(self):
        return self._s.fileno()

    def read(self, n):
        out = b''
        while len(out) < n:
            try:
                chunk = self._s.recv(n - len(out))
            except (BlockingIOError, InterruptedError):
                return out or None
            except socket.timeout:
                raise OSError(ETIMEDOUT, 'ETIMEDOUT')
            except OSError as e:
                if type(e).__name__.startswith('SSLWant'):
                    return out or None
                raise
            if not chunk:
                break
            out += chunk
        return out

    def write(self, buf, n=None):
        data = bytes(buf if n is None else buf[:n])
        try:
            self._s.sendall(data)
        except socket.timeout:
            raise OSError(ETIMEDOUT, 'ETIMEDOUT')
        return len(data)

    def close(self):
        try:
            self._s.close()
        except OSError:
            pass


def _wrap_tls(sock, server_hostname=None, cert_reqs=None, cadata=None, key=None, cert=None,
              **_ignored):
    # MicroPython's ssl.wrap_socket(): no certificate check unless asked for.
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE if cert_reqs is None else cert_reqs
    if cadata:
        ctx.load_verify_locations(cadata=cadata if isinstance(cadata, str) else cadata.decode())
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx.wrap_socket(sock, server_hostname=server_hostname)


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _s(x):
    if isinstance(x, str):
        x = x.encode()
    return struct.pack('!H', len(x)) + bytes(x)


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params={}):
        if port == 0:
            port = 8883 if ssl else 1883
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.ssl_params = ssl_params
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not (0 <= qos <= 2) or not topic:
            raise AssertionError('bad last will')
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = topic, msg, qos, retain

    def connect(self, clean_session=True, timeout=None):
        if self.sock:
            self.sock.close()
        raw = socket.socket()
        raw.settimeout(timeout)
        self.sock = _MpSocket(raw)
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        try:
            raw.connect(addr)
        except socket.timeout:
            raise OSError(ETIMEDOUT, 'ETIMEDOUT')
        if self.ssl is True:
            self.sock = _MpSocket(_wrap_tls(raw, **self.ssl_params))
        elif self.ssl:
            self.sock = _MpSocket(self.ssl.wrap_socket(raw, server_hostname=self.server))
        flags = (1 << 1) if clean_session else 0
        payload = _s(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos << 3) | (0x20 if self.lw_retain else 0)
            payload += _s(self.lw_topic) + _s(self.lw_msg)
        if self.user:
            flags |= 0xC0
            payload += _s(self.user) + _s(self.pswd)
        var = _s('MQTT') + bytes((4, flags)) + struct.pack('!H', self.keepalive)
        body = var + payload
        self.sock.write(b'\x10' + _varlen(len(body)) + body)
        resp = self.sock.read(4)
        if not resp or len(resp) != 4 or resp[0] != 0x20 or resp[1] != 0x02:
            raise AssertionError('bad CONNACK %r' % (resp,))
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        self.sock.write(b'\xe0\x00')
        self.sock.close()

    def ping(self):
        self.sock.write(b'\xc0\x00')

    def publish(self, topic, msg, retain=False, qos=0):
        if qos not in (0, 1):
            raise AssertionError('qos 2 not supported')
        if isinstance(msg, str):
            msg = msg.encode()
        body = _s(topic)
        if qos:
            self.pid += 1
            pid = self.pid
            body += struct.pack('!H', pid)
        body += bytes(msg)
        head = bytes((0x30 | qos << 1 | (1 if retain else 0),)) + _varlen(len(body))
        self.sock.write(head)
        self.sock.write(body)
        if qos == 1:
            while True:
                if self.wait_msg() == 0x40:
                    self.sock.read(1)
                    got = self.sock.read(2)
                    if (got[0] << 8 | got[1]) == pid:
                        return

    def _subunsub(self, topic, typ, ack, qos):
        self.pid += 1
        pid = self.pid
        body = struct.pack('!H', pid) + _s(topic) + (bytes((qos,)) if typ == 0x82 else b'')
        self.sock.write(bytes((typ,)) + _varlen(len(body)) + body)
        while True:
            if self.wait_msg() == ack:
                n = self.sock.read(1)[0]
                resp = self.sock.read(n)
                if (resp[0] << 8 | resp[1]) != pid:
                    raise AssertionError('ack for another packet id')
                if typ == 0x82 and resp[2] == 0x80:
                    raise MQTTException(0x80)
                return

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise AssertionError('Subscribe callback is not set')
        self._subunsub(topic, 0x82, 0x90, qos)

    def unsubscribe(self, topic):
        self._subunsub(topic, 0xA2, 0xB0, 0)

    def _recv_len(self):
        n = 0
        shift = 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def wait_msg(self):
        res = self.sock.read(1)
        self.sock.setblocking(True)   # the umqtt.simple quirk: blocking, no time-out
        if res is None:
            return None
        if res == b'':
            raise OSError(-1)
        if res == b'\xd0':           # PINGRESP
            self.sock.read(1)
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        tl = self.sock.read(2)
        tl = tl[0] << 8 | tl[1]
        topic = self.sock.read(tl)
        size -= tl + 2
        pid = 0
        if op & 6:
            p = self.sock.read(2)
            pid = p[0] << 8 | p[1]
            size -= 2
        msg = self.sock.read(size) if size else b''
        self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b'\x40\x02' + struct.pack('!H', pid))
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
