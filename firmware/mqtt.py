# MQTT publisher. One asyncio task (run()) owns an umqtt.simple MQTTClient; everything
# else only appends to a bounded queue (QMAX, the oldest item is dropped and counted), so
# publish_reading() is O(1) and never blocks. Topic layout and payloads: see ha.py.
#
# Blocking is bounded: DNS is resolved once and cached; connect() has a time-out; the
# client's socket is wrapped so that umqtt.simple's setblocking(True) (after check_msg)
# becomes a short time-out; one message is sent per step and the task yields between.
import gc
import json
import socket
from binascii import hexlify

from compat import asyncio, ticks_ms, ticks_diff, sleep_ms, const, unload
import ha
from tcp import open_tcp

QMAX = const(8)                # a queued reading is ~1 KB of heap on the ESP32
KEEPALIVE = const(60)          # s
BACKOFF_MIN = const(1000)      # ms
BACKOFF_MAX = const(60000)     # ms
_CONNACK = {1: 'unacceptable protocol', 2: 'client id rejected', 3: 'server unavailable',
            4: 'bad user name or password', 5: 'not authorized'}


from config import opt as _opt


def _err(e):
    if type(e).__name__ == 'MQTTException' and e.args and e.args[0] in _CONNACK:
        return 'broker refused: ' + _CONNACK[e.args[0]]
    return '%s: %s' % (type(e).__name__, e)


class _Bounded:
    """Wraps the client's socket: setblocking(True) becomes a time-out, reads are timed."""

    def __init__(self, s, timeout):
        self.s = s
        self.t = timeout
        self.rx = ticks_ms()
        self.settimeout(timeout)

    def settimeout(self, t):
        try:
            self.s.settimeout(t)
        except AttributeError:   # TLS socket without settimeout: best effort
            self.s.setblocking(True)

    def setblocking(self, flag):
        if flag:
            self.settimeout(self.t)
        else:
            self.s.setblocking(False)

    def read(self, n):
        d = self.s.read(n)
        if d:
            self.rx = ticks_ms()
        return d

    def write(self, buf, n=None):
        return self.s.write(buf) if n is None else self.s.write(buf, n)

    def close(self):
        self.s.close()


def _umqtt(*args, **kw):
    from umqtt.simple import MQTTClient
    return MQTTClient(*args, **kw)


class Mqtt:
    def __init__(self, cfg, device_info_fn, client_factory=None, log=print, on_command=None):
        self.cfg = cfg
        self.info_fn = device_info_fn
        self.factory = client_factory or _umqtt
        self.log = log
        self.on_command = on_command
        self.io_timeout = 0.25     # s, every send/receive
        self.connect_timeout = 2   # s, TCP connect (async probe); CONNACK (+ TLS) blocks
        self.idle_ms = 200         # incoming messages are polled at least this often
        self.q = []
        self.drops = self.published = self.connects = 0
        self.last_error = None
        self.c = None
        self._addr = None          # (host, ip) cached DNS answer
        self._fails = 0
        self._link = None
        self._link_dirty = False
        self._cur = None           # generator of the item being sent
        self._disc = None          # generator of discovery messages being sent
        self._announce = False
        self._cleared = False
        self._ha_pfx = None        # discovery prefix the configs were last sent under
        self._reconf = False
        self._energy = {}
        self._ping = self._poll = 0
        self._ev = asyncio.Event()
        self.running = False

    # ---- API for the rest of the firmware (never blocks) ----
    def base(self):
        dev = _opt(self.cfg, 'mqtt_device_id') or _opt(self.cfg, 'hostname') or 'mep'
        return '%s/%s' % (_opt(self.cfg, 'mqtt_prefix') or 'mep', dev)

    def enabled(self):
        return bool(_opt(self.cfg, 'mqtt_enabled', False)) and bool(_opt(self.cfg, 'mqtt_host'))

    def _put(self, item):
        if not self.enabled():
            return
        if len(self.q) >= QMAX:
            self.q.pop(0)
            self.drops += 1
        self.q.append(item)
        self._ev.set()

    def publish_reading(self, reading):
        self._put(('r', reading))

    def publish_link(self, status):
        self._link = status
        self._link_dirty = True
        self._ev.set()

    def raw(self, direction, hexstr):
        if _opt(self.cfg, 'mqtt_raw', False):
            self._put(('m', '/raw', json.dumps({'dir': direction, 'hex': hexstr,
                                                 'ms': ticks_ms()}), False))

    def publish_alarm(self, event):
        self._put(('m', '/alarm', json.dumps(event), False))

    def announce(self):
        """(Re)publish the Home Assistant discovery configs (or clear them)."""
        self._announce = True
        self._ev.set()

    def stats(self):
        return {'enabled': self.enabled(), 'connected': self.c is not None,
                'drops': self.drops, 'published': self.published,
                'reconnects': max(0, self.connects - 1), 'queued': len(self.q),
                'last_error': self.last_error}

    def stop(self):
        self.running = False
        self._ev.set()

    def reconfigure(self):
        """Settings changed: reconnect with them, resolve again, re-announce."""
        self._addr = None
        self._cleared = False
        self._reconf = True
        self._ev.set()

    # ---- the task ----
    async def run(self):
        self.running = True
        backoff = BACKOFF_MIN
        while self.running:
            if self._reconf:
                self._reconf = False
                self._close(graceful=True)
            if not self.enabled():
                self._close(graceful=True)
                await self._wait(1000)
                continue
            if self.c is None:
                if not (await self._probe() and self._connect()):
                    await self._wait(backoff, wake=False)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
            try:
                busy = self._step()
            except Exception as e:   # OSError, MQTTException, umqtt's asserts/IndexError
                self._lost(e)
                continue
            if busy:
                await sleep_ms(0)
            else:
                await self._wait(self.idle_ms)
        self._close(graceful=True)

    async def _wait(self, ms, wake=True):
        if not wake:    # back-off: only stop() ends it early
            t0 = ticks_ms()
            while self.running and ticks_diff(ticks_ms(), t0) < ms:
                await sleep_ms(min(200, ms))
            return
        try:
            await asyncio.wait_for(self._ev.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass
        self._ev.clear()

    async def _probe(self):
        """Resolve (once) and open a TCP connection without blocking: an unreachable
        broker then costs no blocking connect() at all (one extra TCP connection/connect)."""
        host = self.cfg['mqtt_host']
        port = self._port()
        try:
            if self._addr is None or self._addr[0] != host:
                # CPython and the ESP32 give an (ip, port) tuple; the unix port raw bytes
                ai = socket.getaddrinfo(host, port)[0][-1]
                self._addr = (host, ai[0] if isinstance(ai, tuple) else host)
            s = await open_tcp(self._addr[1], port, self.connect_timeout * 1000)
            s.close()
            return True
        except Exception as e:
            self._fails += 1
            if self._fails % 5 == 0:
                self._addr = None
            self.last_error = _err(e)
            self.log('mqtt: cannot reach %s:%d: %s' % (host, port, self.last_error))
            return False

    def _port(self):
        tls = bool(_opt(self.cfg, 'mqtt_tls', False))
        return int(_opt(self.cfg, 'mqtt_port', 0) or (8883 if tls else 1883))

    def _connect(self):
        cfg = self.cfg
        host = cfg['mqtt_host']
        tls = bool(_opt(cfg, 'mqtt_tls', False))
        port = self._port()
        base = self.base()
        c = None
        try:
            user = _opt(cfg, 'mqtt_user') or None
            c = self.factory(base.replace('/', '-'), self._addr[1], port=port, user=user,
                             password=(_opt(cfg, 'mqtt_password', '') if user else None),
                             keepalive=KEEPALIVE, ssl=True if tls else None,
                             ssl_params={'server_hostname': host} if tls else {})
            c.set_callback(self._on_msg)
            c.set_last_will(base + '/status', 'offline', retain=True)
            c.connect(timeout=self.connect_timeout)
            c.sock = _Bounded(c.sock, self.io_timeout)
            c.publish(base + '/status', 'online', retain=True)
            if _opt(cfg, 'ha_discovery', True):
                c.subscribe(ha.status_topic(cfg))
            if _opt(cfg, 'mqtt_commands', False):
                c.subscribe(base + '/cmd')
            c.sock.settimeout(self.io_timeout)
        except Exception as e:
            self._fails += 1
            if self._fails % 5 == 0:
                self._addr = None      # resolve again after repeated failures
            self.last_error = _err(e)
            self.log('mqtt: connect to %s:%d failed: %s' % (host, port, self.last_error))
            if c is not None and c.sock is not None:
                try:
                    c.sock.close()
                except Exception:
                    pass
            return False
        self.c = c
        self._fails = 0
        self.connects += 1
        self._energy = {}
        self._link_dirty = self._link is not None
        self._announce = True
        self._ping = self._poll = ticks_ms()
        self.log('mqtt: connected to %s:%d as %s' % (host, port, base))
        return True

    def _close(self, graceful=False):
        c = self.c
        if c is None:
            return
        self.c = None
        self._cur = self._disc = None
        unload('hadisc')
        try:
            if graceful:
                c.publish(self.base() + '/status', 'offline', retain=True)
                c.disconnect()
            else:
                c.sock.close()
        except Exception:
            pass

    def _lost(self, e):
        self.last_error = _err(e)
        self.log('mqtt: connection lost: %s' % self.last_error)
        if self._cur is not None:
            self.drops += 1
        self._close()

    def _send(self, topic, payload, retain=False):
        self.c.publish(topic, payload, retain=retain)
        self.c.sock.settimeout(self.io_timeout)
        self._ping = ticks_ms()
        self.published += 1

    def _step(self):
        """Do at most one unit of work; True if more may be pending right away."""
        c = self.c
        now = ticks_ms()
        if ticks_diff(now, self._poll) >= self.idle_ms or not (self.q or self._cur):
            self._poll = now
            for _ in range(4):
                op = c.check_msg()
                c.sock.settimeout(self.io_timeout)
                if op is None or self.c is None:
                    break
            if self.c is None:
                return False
            if ticks_diff(now, self._ping) >= KEEPALIVE * 500:
                c.ping()
                c.sock.settimeout(self.io_timeout)
                self._ping = now
            if ticks_diff(now, c.sock.rx) > KEEPALIVE * 1500:
                raise OSError('broker silent')
        if self._announce:
            info = self.info_fn()
            if info is not None and ha.node_id(info):
                self._announce = False
                on = _opt(self.cfg, 'ha_discovery', True)
                if on or not self._cleared:
                    import hadisc      # dropped again once the generator is done (_next)
                    if on:
                        self._disc = hadisc.announce(self.cfg, info, self.base(), self._ha_pfx)
                        self._ha_pfx = hadisc.prefix(self.cfg)
                    else:
                        self._cleared = True
                        self._disc = hadisc.clear_messages(self.cfg, info, self._ha_pfx)
                        self._ha_pfx = None
        if self._disc is not None:
            m = self._next('_disc')
            if m is not None:
                self._send(m[0], m[1], True)
                return True
            unload('hadisc')
        if self._link_dirty:
            self._link_dirty = False
            self._send(self.base() + '/link', json.dumps(self._link), True)
            return True
        if self._cur is None and self.q:
            self._cur = self._messages(self.q.pop(0))
        if self._cur is not None:
            m = self._next('_cur')
            if m is not None:
                self._send(m[0], m[1], m[2])
                return True
        return bool(self.q)

    def _next(self, name):
        """The next message of generator self.<name>, or None (then it is cleared). Out of
        memory while building a message drops that item only: nothing was sent yet, so
        the connection is fine (treating it as lost would reconnect and re-announce, which
        needs more memory still)."""
        try:
            return next(getattr(self, name))
        except StopIteration:
            pass
        except MemoryError:
            self.drops += 1
            self.last_error = 'out of memory building a message (dropped)'
            gc.collect()
        setattr(self, name, None)
        return None

    def _messages(self, item):
        if item[0] == 'm':
            return iter(((self.base() + item[1], item[2], item[3]),))
        return ha.reading_messages(self.cfg, self.base(), item[1], self._energy)

    def _on_msg(self, topic, msg):
        topic = bytes(topic).decode()
        if topic == ha.status_topic(self.cfg):
            if bytes(msg) == b'online':
                self.announce()
        elif topic == self.base() + '/cmd':
            self._command(msg)

    def _command(self, msg):
        res = {'ok': False}
        try:
            if not _opt(self.cfg, 'mqtt_commands', False) or self.on_command is None:
                raise ValueError('commands are disabled')
            req = ha.parse_command(msg)
            self.on_command(req)
            res = {'ok': True, 'hex': hexlify(req).decode()}
        except Exception as e:
            res['error'] = str(e)
        self._put(('m', '/cmd/result', json.dumps(res), False))
