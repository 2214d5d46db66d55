# MQTT publisher. One asyncio task (run()) owns the client (net/mqtt_wire.py: umqtt.simple
# with a connect that never blocks); everything else only appends to a bounded queue (QMAX,
# the oldest item is dropped and counted), so publish_reading() is O(1) and never blocks.
# Topic layout and payloads: see ha.py.
#
# Blocking is bounded: DNS is resolved once and cached; the TCP connect, the TLS handshake
# (verified unless mqtt_tls_insecure) and the wait for CONNACK are asynchronous; the
# client's reads and writes have a short time-out; a step sends one discovery message, or a
# queued item's messages for at most 20 ms, and the task yields between steps.
# Keep-alive (MQTT 3.1.1, 3.1.2.10): a PINGREQ goes out every KEEPALIVE/2 s whatever else
# is sent, so the broker answers at least that often; nothing received for KEEPALIVE s
# means the connection is dead. Failed or short-lived connections back off (1 s .. 60 s).
import gc
import json
import socket
from binascii import hexlify

from compat import asyncio, ticks_ms, ticks_diff, sleep_ms, const, unload
from net import ha
from net.tcp import tls_context, TLSError

QMAX = const(8)                # a queued reading is ~1 KB of heap on the ESP32
KEEPALIVE = const(60)          # s
BACKOFF_MIN = const(1000)      # ms
BACKOFF_MAX = const(60000)     # ms
STABLE_MS = const(60000)       # a connection that lasted this long resets the back-off
DIAG_MS = const(60000)         # diagnostics (B/diag) period


from system.config import opt as _opt


def _err(e):
    if isinstance(e, TLSError):
        return str(e)
    from net.mqtt_wire import refused_words
    return refused_words(e) or '%s: %s' % (type(e).__name__, e)


def _client(*args):
    # umqtt.simple (and so the wire layer) is imported for the first connection only
    from net.mqtt_wire import Client
    return Client(*args)


def link_words(status):
    """The user-facing link state of a link.status() dict ('ok', 'no answer', ...)."""
    if not status:
        return 'unknown'
    return str(status.get('link') or status.get('state') or 'unknown')


class Mqtt:
    def __init__(self, cfg, device_info_fn, client_factory=None, log=print, on_command=None,
                 sys_fn=None, periods=None):
        """sys_fn: () -> {'uptime': s, 'heap_free': bytes, 'reset_cause': str, 'rssi': dBm,
        'url': web UI address} (any may be missing); periods: a periods.Periods or None."""
        self.cfg = cfg
        self.info_fn = device_info_fn
        self.factory = client_factory or _client
        self.log = log
        self.on_command = on_command
        self.sys_fn = sys_fn
        self.periods = periods
        self.io_timeout = 0.25     # s, every send/receive
        self.connect_timeout = 5   # s, TCP connect, TLS handshake, CONNACK (each; async)
        self.idle_ms = 1000        # incoming messages are polled at least this often
        self.keepalive = KEEPALIVE # s
        self.q = []
        self.drops = self.published = self.connects = 0
        self.last_error = None
        self.c = None
        self._addr = None          # (host, ip) cached DNS answer
        self._fails = 0
        self._link = None          # newest link status dict
        self._link_sent = None     # link words last published
        self._diag_at = None       # ticks of the last B/diag, None: due
        self._cur = None           # generator of the item being sent
        self._disc = None          # generator of discovery messages being sent
        self._announce = False
        self._cleared = False
        self._ids_cleaned = False  # configs under an earlier (manufacturer serial) id cleared
        self._ha_pfx = None        # discovery prefix the configs were last sent under
        self._reconf = False
        self._energy = {}
        self._last_pub = None      # ticks of the last state message (mqtt_interval_s)
        self._ping = self._poll = self._up = 0
        self._ev = asyncio.Event()
        self.running = False
        self._settings()

    def _settings(self):
        # what every reading needs, looked up once per (re)configuration, not per reading
        cfg = self.cfg
        self._on = bool(_opt(cfg, 'mqtt_enabled', False)) and bool(_opt(cfg, 'mqtt_host'))
        self._iv = int(_opt(cfg, 'mqtt_interval_s', 0) or 0) * 1000
        dev = _opt(cfg, 'mqtt_device_id') or _opt(cfg, 'hostname') or 'mep'
        self._base = '%s/%s' % (_opt(cfg, 'mqtt_prefix') or 'mep', dev)

    # ---- API for the rest of the firmware (never blocks) ----
    def base(self):
        return self._base

    def enabled(self):
        return self._on

    def _put(self, item):
        if not self._on:
            return
        if len(self.q) >= QMAX:
            self.q.pop(0)
            self.drops += 1
        self.q.append(item)
        self._ev.set()

    def publish_reading(self, reading):
        if not self._on:
            return
        per = self.periods
        if per is not None:
            per.feed(reading)
        iv = self._iv
        if iv:
            now = ticks_ms()
            if self._last_pub is not None and ticks_diff(now, self._last_pub) < iv - iv // 10:
                return
            self._last_pub = now
        self._put(('r', reading))

    def publish_link(self, status):
        """Called often (every few seconds); B/link goes out only when the state in words
        changes, B/diag once a minute."""
        self._link = status
        if link_words(status) != self._link_sent:
            self._ev.set()

    def raw(self, direction, hexstr):
        if _opt(self.cfg, 'mqtt_raw', False):   # called only while the app's hook is set
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
                'last_error': self.last_error,
                'tls': None if not _opt(self.cfg, 'mqtt_tls', False) else
                'not verified' if _opt(self.cfg, 'mqtt_tls_insecure') else 'verified'}

    def stop(self):
        self.running = False
        self._ev.set()

    def reconfigure(self):
        """Settings changed: reconnect with them, resolve again, re-announce."""
        self._settings()
        self._addr = None
        self._cleared = False
        self._reconf = True
        self._ev.set()

    # ---- the task ----
    async def run(self):
        self.running = True
        tick = asyncio.create_task(self._tick())
        try:
            await self._loop()
        finally:
            tick.cancel()

    async def _tick(self):
        # the one timer: wakes the task for its timed work (incoming messages, keep-alive,
        # diagnostics). Waiting on the event alone costs no task per wait (wait_for makes
        # two), and a reading wakes the task through the event anyway.
        while self.running:
            await sleep_ms(min(self.idle_ms, self.keepalive * 250 or self.idle_ms))
            self._ev.set()

    async def _loop(self):
        backoff = BACKOFF_MIN
        while self.running:
            if self._reconf:
                self._reconf = False
                self._close(graceful=True)
            if not self.enabled():
                self._close(graceful=True)
                await self._wake()
                continue
            if self.c is None:
                if not await self._connect():
                    await self._backoff(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            try:
                busy = self._step()
            except MemoryError:
                # the heap, not the network: a message is built whole before its one write,
                # so nothing of it went out and the connection is as it was. It is dropped;
                # a reconnect would need more memory still, and the broker a storm of them.
                self._oom()
                await sleep_ms(100)
                continue
            except Exception as e:   # OSError, MQTTException, umqtt's asserts/IndexError
                self._lost(e)
                # a connection that broke soon after it was made backs off like a failed one
                if ticks_diff(ticks_ms(), self._up) >= STABLE_MS:
                    backoff = BACKOFF_MIN
                await self._backoff(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if ticks_diff(ticks_ms(), self._up) >= STABLE_MS:
                backoff = BACKOFF_MIN
            if busy:
                await sleep_ms(0)
            else:
                await self._wake()
        self._close(graceful=True)

    async def _backoff(self, ms):
        # only stop() ends it early
        t0 = ticks_ms()
        while self.running and ticks_diff(ticks_ms(), t0) < ms:
            await sleep_ms(min(200, ms))

    async def _wake(self):
        # until new work, stop() or the ticker's next beat (at most idle_ms)
        await self._ev.wait()
        self._ev.clear()

    def _port(self):
        tls = bool(_opt(self.cfg, 'mqtt_tls', False))
        return int(_opt(self.cfg, 'mqtt_port', 0) or (8883 if tls else 1883))

    def _failed(self, what, e):
        self._fails += 1
        if self._fails % 5 == 0:
            self._addr = None      # resolve again after repeated failures
        self.last_error = _err(e)
        self.log('mqtt: %s %s:%d failed: %s' % (what, self.cfg['mqtt_host'], self._port(),
                                                 self.last_error))

    def tls(self):
        """None without TLS, else the context: verified unless mqtt_tls_insecure."""
        cfg = self.cfg
        if not _opt(cfg, 'mqtt_tls', False):
            return None
        return tls_context(_opt(cfg, 'mqtt_ca') or None, bool(_opt(cfg, 'mqtt_tls_insecure')))

    async def _connect(self):
        """TCP connect, TLS and MQTT CONNECT/CONNACK without blocking the loop, then the
        status, the subscriptions. True when connected."""
        cfg = self.cfg
        host = cfg['mqtt_host']
        port = self._port()
        base = self.base()
        try:
            if self._addr is None or self._addr[0] != host:
                # CPython and the ESP32 give an (ip, port) tuple; the unix port raw bytes
                ai = socket.getaddrinfo(host, port)[0][-1]
                self._addr = (host, ai[0] if isinstance(ai, tuple) else host)
        except Exception as e:
            self._failed('DNS look-up of', e)
            return False
        c = None
        try:
            c = self.factory(base.replace('/', '-'), host, port, _opt(cfg, 'mqtt_user') or None,
                             _opt(cfg, 'mqtt_password', ''), self.keepalive)
            c.io_timeout = self.io_timeout
            c.set_last_will(base + '/status', 'offline', retain=True)
            c.set_callback(self._on_msg)
            await c.aconnect(self._addr[1], self.tls(), self.connect_timeout * 1000)
        except Exception as e:
            self._failed('connect to', e)
            return False
        try:
            c.publish(base + '/status', 'online', retain=True)
            if _opt(cfg, 'ha_discovery', True):
                c.subscribe(ha.status_topic(cfg))
            if _opt(cfg, 'mqtt_commands', False):
                c.subscribe(base + '/cmd')
        except Exception as e:
            self._failed('subscribe at', e)
            try:
                c.abort()
            except Exception:
                pass
            return False
        self.c = c
        self._fails = 0
        self.connects += 1
        self._energy = {}
        self._link_sent = None
        self._diag_at = None
        self._announce = True
        self._ping = self._poll = self._up = ticks_ms()
        self.log('mqtt: connected to %s:%d as %s%s' % (host, port, base, self._tls_words()))
        return True

    def _tls_words(self):
        if not _opt(self.cfg, 'mqtt_tls', False):
            return ''
        return ' (TLS, certificate NOT verified)' if _opt(self.cfg, 'mqtt_tls_insecure') \
            else ' (TLS, verified)'

    def _close(self, graceful=False):
        c = self.c
        if c is None:
            return
        self.c = None
        self._cur = self._disc = None
        unload('net.ha_discovery')
        try:
            if graceful:
                c.publish(self.base() + '/status', 'offline', retain=True)
                c.disconnect()
            else:
                c.abort()
        except Exception:
            pass

    def _lost(self, e):
        self.last_error = _err(e)
        self.log('mqtt: connection lost: %s' % self.last_error)
        if self._cur is not None:
            self.drops += 1
        self._close()

    def _send(self, topic, payload, retain=False):
        # a QoS 0 PUBLISH only writes, in one piece (mqtt_wire.Client.publish): out of
        # memory while it is built leaves the connection as it was
        self.c.publish(topic, payload, retain)
        self.published += 1

    def _oom(self):
        self.drops += 1
        self.last_error = 'out of memory building a message (dropped)'
        gc.collect()

    def _step(self):
        """Do one unit of work (an item's messages: for up to 20 ms); True if more may be
        pending right away."""
        c = self.c
        now = ticks_ms()
        # incoming: at the ticker's beat (every idle_ms, some slack for its jitter), not per publish
        if ticks_diff(now, self._poll) >= self.idle_ms - self.idle_ms // 4:
            self._poll = now
            for _ in range(4):
                op = c.check_msg()
                if op is None or self.c is None:
                    break
            if self.c is None:
                return False
        ka = self.keepalive * 1000
        if ticks_diff(now, self._ping) >= ka // 2:
            c.ping()
            self._ping = now
        if ticks_diff(now, c.heard()) > ka:
            raise OSError('broker silent for %d s' % self.keepalive)
        if self._announce:
            info = self.info_fn()
            if info is not None and ha.node_id(info):
                self._announce = False
                on = _opt(self.cfg, 'ha_discovery', True)
                if on or not self._cleared:
                    from net import ha_discovery      # dropped again once the generator is done (_next)
                    if on:
                        old = []
                        if not self._ids_cleaned:
                            self._ids_cleaned = True
                            old = ha.old_node_ids(info)
                        sysinfo = self._sys()
                        self._disc = ha_discovery.announce(
                            self.cfg, info, self.base(), self._ha_pfx, old, sysinfo,
                            list(ha.diag_dict(self._link, sysinfo)))
                        self._ha_pfx = ha_discovery.prefix(self.cfg)
                    else:
                        self._cleared = True
                        self._disc = ha_discovery.clear_messages(self.cfg, info, self._ha_pfx)
                        self._ha_pfx = None
        if self._disc is not None:
            m = self._next('_disc')
            if m is not None:
                self._send(m[0], m[1], True)
                return True
            unload('net.ha_discovery')
        words = link_words(self._link)
        if self._link is not None and words != self._link_sent:
            payload = ha.link_payload(self._link)     # built before it counts as sent
            self._send(self.base() + '/link', payload, True)
            self._link_sent = words
            return True
        if self._diag_at is None or ticks_diff(now, self._diag_at) >= DIAG_MS:
            self._diag_at = now
            d = ha.diag_dict(self._link, self._sys())
            if d:
                self._send(self.base() + '/diag', json.dumps(d), False)
                return True
        if self._cur is None and self.q:
            self._cur = self._messages(self.q.pop(0))
        if self._cur is not None:
            # an item's messages (a reading: its state, now and then an energy) go out in
            # one step for up to 20 ms; then the loop and the MEP link get their turn
            while True:
                m = self._next('_cur')
                if m is None:
                    break
                self._send(m[0], m[1], m[2])
                if ticks_diff(ticks_ms(), now) > 20:
                    return True
        return bool(self.q)

    def _sys(self):
        if self.sys_fn is None:
            return {}
        try:
            return self.sys_fn() or {}
        except Exception:
            return {}

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
            self._oom()
        setattr(self, name, None)
        return None

    def _messages(self, item):
        if item[0] == 'm':
            return iter(((self.base() + item[1], item[2], item[3]),))
        per = self.periods
        return ha.reading_messages(self.cfg, self.base(), item[1], self._energy,
                                   per.values(item[1]) if per is not None else None)

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


