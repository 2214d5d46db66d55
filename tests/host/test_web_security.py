# The web UI's defences, tested against the real App (link + poller on the meter simulator, the
# web server behind web/conn.py) over real loopback sockets: Host check, security headers,
# request limits and the connection cap (with the MEP link polling through the flood),
# local-only next=, per-client login back-off, revocable sessions, the password for protected
# settings, typed secrets kept over a failed save, OTA downgrades, the private legacy
# endpoints, password length and hashing that does not stall the link.
import binascii
import gzip
import json
import os
import socket
import threading
import time
from urllib.parse import urlencode

import pytest

from apphost import write_config
from web_helpers import PASSWORD, make_bundle

MEP_KEY = b'ABCDEFGHIJKLMNOP'      # the digest key of apphost.DEMO_MBK


class conn:
    """web/conn.py's limits (the figures these tests expect of any version)."""
    MAX_CONN = 6
    REQUEST_MS = 5000
    MAX_HEADERS = 32
    MAX_BODY = 8192


def test_limits_as_expected():
    from web import conn as real
    for k in ('MAX_CONN', 'REQUEST_MS', 'MAX_HEADERS', 'MAX_BODY'):
        assert getattr(real, k) == getattr(conn, k), k


def _free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Running:
    """The App ('host' board) in a thread with its own event loop, the simulator on loopback,
    the web server on 127.0.0.1:<port>."""

    def __init__(self, data_dir, password=PASSWORD, **cfg):
        import asyncio
        cfg.setdefault('hostname', 'mep-test')
        c = write_config(data_dir, **cfg)
        if password:
            assert c.set_password(password) == {}
            c.save()
        self.data_dir = data_dir
        self.port = _free_port()
        self.logs = []
        self.stamps = []
        self.error = None
        self.ready = threading.Event()
        self.asyncio = asyncio
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), 'app did not start'
        if self.error:
            raise self.error
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                break
            except OSError:
                time.sleep(0.05)

    def _run(self):
        try:
            self.asyncio.run(self._main())
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.error = e
            self.ready.set()

    async def _main(self):
        import app as app_mod
        from tools.mepsim import Meter
        from tools.mepsim.serve import serve_tcp
        self.sim = await serve_tcp(Meter(key=MEP_KEY), '127.0.0.1', 0)
        self.app = app_mod.App('host', data_dir=self.data_dir,
                               mep_target='127.0.0.1:%d' % self.sim.port, http_port=self.port,
                               http_host='127.0.0.1', log=self.logs.append, supervise=False)
        self.app.poller.on_reading(lambda r: self.stamps.append(time.monotonic()))
        self.loop = self.asyncio.get_running_loop()
        self.task = self.asyncio.ensure_future(self.app.main())
        self.ready.set()
        try:
            await self.task
        except self.asyncio.CancelledError:
            pass
        finally:
            self.sim.close()

    def wait_readings(self, n=1, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.stamps) < n:
            time.sleep(0.05)
        assert len(self.stamps) >= n, 'no meter readings: %r' % self.app.link.status()

    def max_gap(self, t0, t1):
        """The longest time without a reading between t0 and t1 (monotonic seconds)."""
        pts = [t0] + [t for t in list(self.stamps) if t0 < t < t1] + [t1]
        return max(b - a for a, b in zip(pts, pts[1:]))

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


@pytest.fixture
def app(tmp_path):
    r = Running(str(tmp_path))
    yield r
    r.stop()


class Resp:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b'\r\n\r\n')
        lines = head.decode('latin-1').split('\r\n')
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        self.cookies = []
        for ln in lines[1:]:
            k, _, v = ln.partition(':')
            self.headers[k.strip().lower()] = v.strip()
            if k.strip().lower() == 'set-cookie':
                self.cookies.append(v.strip())
        self.text = self.body.decode('utf-8', 'replace')

    @property
    def json(self):
        return json.loads(self.text)


class Http:
    """A browser-like client: cookies, one connection per request, a chosen source address."""

    def __init__(self, port, host='localhost', src='127.0.0.1'):
        self.port = port
        self.host = host
        self.src = src
        self.cookies = {}

    def raw(self, data, timeout=15):
        s = socket.create_connection(('127.0.0.1', self.port), timeout,
                                     source_address=(self.src, 0))
        try:
            s.sendall(data)
            out = b''
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        finally:
            s.close()
        return out

    def req(self, method, path, body=b'', headers=None):
        if isinstance(body, dict):
            body = urlencode(body)
        if isinstance(body, str):
            body = body.encode()
        h = {'Host': self.host}
        if self.cookies:
            h['Cookie'] = '; '.join('%s=%s' % kv for kv in self.cookies.items())
        if body or method == 'POST':
            h['Content-Length'] = str(len(body))
            h.setdefault('Content-Type', 'application/x-www-form-urlencoded')
        h.update(headers or {})
        head = '%s %s HTTP/1.1\r\n%s\r\n' % (method, path, ''.join(
            '%s: %s\r\n' % kv for kv in h.items()))
        r = Resp(self.raw(head.encode() + body))
        for c in r.cookies:
            name, _, rest = c.partition('=')
            val = rest.split(';')[0]
            if 'Max-Age=0' in c or not val:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        return r

    def get(self, path, **kw):
        return self.req('GET', path, **kw)

    def post(self, path, body=b'', **kw):
        return self.req('POST', path, body, **kw)

    def token(self):
        """The CSRF token as the login and setup pages get it."""
        r = self.get('/api/session')
        assert r.status == 200, r.text
        return r.json['csrf']

    def login(self, password=PASSWORD, next_path=None):
        f = {'csrf': self.token(), 'password': password}
        if next_path is not None:
            f['next'] = next_path
        return self.post('/login', f)


def logged_in(app, **kw):
    h = Http(app.port, **kw)
    r = h.login()
    assert r.status == 302, r.text
    return h


# --- 5: Host header -------------------------------------------------------------------------

def test_host_header_is_one_of_the_modules_names(tmp_path):
    app = Running(str(tmp_path), password=None)
    try:
        evil = Http(app.port, host='rebind.evil.example')
        r = evil.get('/setup')
        assert r.status == 421 and 'not reached by the name' in r.text
        r = evil.get('/api/session')
        assert r.status == 421 and 'csrf' not in r.json
        r = evil.post('/setup', {'password': 'attacker-pw-123', 'password2': 'attacker-pw-123'})
        assert r.status == 421 and not app.app.config['web_password_hash']
        r = evil.get('/api/now')
        assert r.status == 421 and 'error' in r.json
        assert app.app.config.update({'web_hosts': 'meter.home.lan'}) == {}
        for name in ('localhost', '127.0.0.1', 'mep-test', 'MEP-test.local', 'mep-test:80',
                     'meter.home.lan', '127.0.0.1:%d' % app.port):
            assert Http(app.port, host=name).get('/setup').status == 200, name
        raw = Http(app.port).raw(b'GET /setup HTTP/1.0\r\n\r\n')
        assert raw.startswith(b'HTTP/1.0 421')
        # the first password can be set through a proper name
        h = Http(app.port, host='mep-test.local')
        tok = h.token()
        r = h.post('/setup', json.dumps({'password': 'owner-pw-1234', 'password2': 'owner-pw-1234'}),
                   headers={'Content-Type': 'application/json', 'X-CSRF-Token': tok})
        assert r.status == 200 and r.json['next'] == '/'
        assert app.app.config.check_password('owner-pw-1234')
    finally:
        app.stop()


# --- 7: security headers on every response --------------------------------------------------

def test_security_headers_on_every_response(app):
    h = logged_in(app)
    seen = [h.get(p) for p in ('/', '/settings', '/status', '/tinker', '/ota', '/login',
                               '/static/app.css', '/api/now', '/api/status', '/nothing')]
    seen.append(Http(app.port).get('/api/log'))                       # 401
    seen.append(Http(app.port).get('/settings'))                      # 302
    seen.append(Http(app.port, host='evil.example').get('/'))         # 421
    seen.append(h.post('/reboot', {'csrf': 'wrong'}))                 # 403
    seen.append(Resp(h.raw(b'GET / HTTP/1.0\r\nX: ' + b'a' * 5000 + b'\r\n\r\n')))   # 431
    pages = 0
    for r in seen:
        assert r.status, r.text
        assert r.headers.get('x-content-type-options') == 'nosniff', r.status
        assert r.headers.get('referrer-policy') == 'same-origin', r.status
        if not r.headers.get('content-type', '').startswith('text/html'):
            continue
        pages += 1                              # every page: CSP and no framing
        csp = r.headers.get('content-security-policy', '')
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, r.status
        assert "script-src 'self'" in csp and 'unsafe-inline' not in csp
        assert r.headers.get('x-frame-options') == 'DENY', r.status
    assert pages == 9, pages


# --- 2: request limits, slow and silent clients, the connection cap ---------------------------

def _closed_within(s, seconds):
    """(seconds until the server closed the connection, bytes it sent) or (None, bytes)."""
    t0 = time.monotonic()
    s.settimeout(0.2)
    got = b''
    while time.monotonic() - t0 < seconds:
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0, got
        if not b:
            return time.monotonic() - t0, got
        got += b
    return None, got


def test_request_size_limits(app):
    h = Http(app.port)
    r = Resp(h.raw(b'GET /login HTTP/1.1\r\nHost: localhost\r\nX-Big: ' + b'a' * 6000 +
                   b'\r\n\r\n'))
    assert r.status == 431 and 'too large' in r.text
    many = b''.join(b'X-H%d: v\r\n' % i for i in range(conn.MAX_HEADERS + 5))
    r = Resp(h.raw(b'GET /login HTTP/1.1\r\nHost: localhost\r\n' + many + b'\r\n'))
    assert r.status == 431 and 'too many header lines' in r.text
    r = Resp(h.raw(b'GET /login?x=' + b'a' * 3000 + b' HTTP/1.1\r\nHost: localhost\r\n\r\n'))
    assert r.status == 414
    r = Resp(h.raw(b'POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9999999999\r\n\r\n'))
    assert r.status == 400 and 'Content-Length' in r.text
    r = Resp(h.raw(b'POST /login HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n'))
    assert r.status == 411
    r = h.post('/login', 'password=' + 'x' * conn.MAX_BODY)
    assert r.status == 413
    # 2 MB of headers in small lines: the server stops reading and closes long before
    s = socket.create_connection(('127.0.0.1', app.port), 10)
    sent = 0
    try:
        s.sendall(b'GET /login HTTP/1.1\r\nHost: localhost\r\n')
        while sent < 2 * 1024 * 1024:
            s.sendall(b'X-Filler: ' + b'b' * 1000 + b'\r\n')
            sent += 1012
            time.sleep(0.002)
    except OSError:
        pass
    finally:
        s.close()
    assert sent < 256 * 1024, 'the server kept reading %d bytes of headers' % sent
    assert h.get('/login').status == 200


def test_slow_silent_and_kept_alive_connections_are_closed(app):
    limit = conn.REQUEST_MS / 1000
    silent = socket.create_connection(('127.0.0.1', app.port), 5)
    half = socket.create_connection(('127.0.0.1', app.port), 5)
    half.sendall(b'GET /login HTTP/1.1\r\nHost: localhost\r\n')       # no blank line, ever
    body = socket.create_connection(('127.0.0.1', app.port), 5)
    body.sendall(b'POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nab')
    drip = socket.create_connection(('127.0.0.1', app.port), 5)
    keep = socket.create_connection(('127.0.0.1', app.port), 5)
    keep.sendall(b'GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n')
    t_keep, got = _closed_within(keep, 3)
    assert t_keep is not None and got.startswith(b'HTTP/1.0 200'), got[:40]
    for _ in range(int(limit) + 2):            # a byte a second: never complete in time
        try:
            drip.sendall(b'G')
        except OSError:
            break
        time.sleep(1)
    for s in (silent, half, body, drip):
        t, got = _closed_within(s, limit + 3)
        assert t is not None, 'connection still open after %.1f s' % (limit + 3)
        assert got == b'' or got.startswith(b'HTTP/1.0 408'), got[:60]
        s.close()
    keep.close()


def test_connection_cap_503_and_the_link_keeps_polling(app):
    app.wait_readings(3)
    t0 = time.monotonic()
    refused = 0

    def slow_client(_):
        s = socket.create_connection(('127.0.0.1', app.port), 10)
        try:
            s.sendall(b'GET /api/now HTTP/1.1\r\nHost: localhost\r\n')
        except OSError:
            pass
        return s
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(50) as pool:                  # a bounded flood of slow clients
        held = list(pool.map(slow_client, range(200)))
    print('opened in %.2f s' % (time.monotonic() - t0))
    end = time.monotonic() + 60                # the server has answered the flood's excess
    while app.app.web_app.conn_stats[2] < 150 and time.monotonic() < end:
        time.sleep(0.05)
    open_ = other = 0
    for s in held:
        s.settimeout(0.01)
        try:
            b = s.recv(4096)
        except socket.timeout:
            open_ += 1                    # still waiting for the rest of its request
            continue
        except ConnectionResetError:
            b = b''
        if b.startswith(b'HTTP/1.0 503'):
            refused += 1
            assert b'too many connections' in b and b'Retry-After: 2' in b
        else:
            other += 1
    print('flood of 200: %d open, %d refused with 503, %d closed otherwise'
          % (open_, refused, other))
    assert refused >= 150 and open_ + refused + other == 200, (open_, refused, other)
    stats = app.app.web_app.conn_stats       # [now, most at once, refused]
    assert stats[1] == conn.MAX_CONN and stats[2] >= refused, stats
    t1 = time.monotonic()
    gap = app.max_gap(t0, t1)
    during = len([t for t in list(app.stamps) if t0 < t < t1])
    print('%d readings during the flood (%.2f s), longest time without one %.2f s'
          % (during, t1 - t0, gap))
    # the link went on polling all along (a loop held by the flood would let at most the
    # one reading through that was due when it ended, not two): counted, not timed
    assert during >= 2, (during, t1 - t0, gap)
    for s in held:
        s.close()
    # the slots come free again: a normal request is served
    end = time.monotonic() + conn.REQUEST_MS / 1000 + 3
    while time.monotonic() < end:
        r = Http(app.port).get('/api/session')
        if r.status == 200:
            break
        time.sleep(0.2)
    print('served again after %.2f s' % (time.monotonic() - t1))
    assert r.status == 200 and len(r.json['csrf']) == 32


# --- 3: next= ---------------------------------------------------------------------------------

def test_login_next_only_local_paths(app):
    for bad in ('/\t/evil.example/path', '/%09/evil.example', '//evil.example', '/\\evil.example',
                'https://evil.example/', 'javascript:alert(1)', '/%2f/evil.example',
                '/%5cevil.example', ' /x', '/\n/evil.example'):
        h = Http(app.port)
        r = h.login(next_path=bad)
        assert r.status == 302 and r.headers['location'] == '/', (bad, r.headers['location'])
        h = Http(app.port)                        # the login page's way: JSON, next answered
        r = h.post('/login', json.dumps({'password': PASSWORD, 'next': bad}),
                   headers={'Content-Type': 'application/json', 'X-CSRF-Token': h.token()})
        assert r.status == 200 and r.json['next'] == '/', (bad, r.json)
    # GET /login?next=/%09/host (as in the report): the page is static, the POST decides
    h = Http(app.port)
    page = gzip.decompress(h.get('/login?next=/%09/evil.example/path').body).decode()
    assert 'Log in' in page and 'evil.example' not in page
    r = h.post('/login?next=/%09/evil.example/path', {'csrf': h.token(), 'password': PASSWORD})
    assert r.headers['location'] == '/'


def test_expired_session_goes_to_login_and_back(app):
    h = Http(app.port)
    r = h.get('/settings?tab=mqtt')
    assert r.status == 302 and r.headers['location'] == '/login?next=/settings%3Ftab%3Dmqtt'
    assert h.get(r.headers['location']).status == 200
    r = h.post('/login', {'csrf': h.token(), 'password': PASSWORD,
                          'next': '/settings?tab=mqtt'})
    assert r.status == 302 and r.headers['location'] == '/settings?tab=mqtt'
    assert h.get('/settings?tab=mqtt').status == 200
    r = Http(app.port).get('/api/status')
    assert r.status == 401 and r.json['error'] == 'login required'


# --- 4: login back-off per client ---------------------------------------------------------

def test_failed_logins_elsewhere_never_block_the_owner(app):
    for n in range(2, 8):                                 # 6 addresses, 5 wrong passwords each
        bad = Http(app.port, src='127.0.0.%d' % n)
        tok = bad.token()
        codes = [bad.post('/login', {'csrf': tok, 'password': 'guess-%d' % i}).status
                 for i in range(5)]
        assert codes[0] == 401 and codes[-1] == 429, codes
    r = bad.post('/login', {'csrf': tok, 'password': PASSWORD})
    assert r.status == 429 and int(r.headers['retry-after']) > 0
    r = bad.post('/login', json.dumps({'password': PASSWORD}),
                 headers={'Content-Type': 'application/json', 'X-CSRF-Token': tok})
    assert r.status == 429 and r.json['retry_after'] == int(r.headers['retry-after']) > 0
    assert 'mep_s' not in bad.cookies
    owner = Http(app.port, src='127.0.0.1')
    r = owner.login()
    assert r.status == 302 and 'mep_s' in owner.cookies
    assert owner.get('/settings').status == 200
    assert any('failed login from 127.0.0.7' in x for x in app.logs)


# --- 6: sessions -------------------------------------------------------------------------------

def _mint(secret, pw_hash, first, nonce='00112233aabbccdd'):
    import hmac
    import hashlib
    body = '%d.%s' % (first, nonce)
    sig = hmac.new(secret.encode(), ('S' + body + pw_hash[-16:]).encode(),
                   hashlib.sha256).hexdigest()
    return body + '.' + sig


def test_sessions_revocable_and_not_mintable(app):
    from web import auth
    a = logged_in(app)
    b = logged_in(app)
    c = logged_in(app)
    old_a = a.cookies['mep_s']
    r = a.post('/logout', {'csrf': a.get('/api/config').json['csrf']})
    assert r.status == 302 and 'mep_s' not in a.cookies
    a.cookies['mep_s'] = old_a                      # the cookie kept and replayed
    assert a.get('/settings').status == 302
    d = logged_in(app)                              # the pages' logout button: fetch, JSON
    old_d = d.cookies['mep_s']
    r = d.post('/logout', b'{}', headers={'Content-Type': 'application/json',
                                          'X-CSRF-Token': d.token()})
    assert r.status == 200 and r.json['next'] == '/login' and 'mep_s' not in d.cookies
    d.cookies['mep_s'] = old_d
    assert d.get('/settings').status == 302
    assert b.get('/settings').status == 200
    # a backup with the secrets gives the session secret and the password hash: still no way in
    tok = b.get('/api/config').json['csrf']
    backup = b.post('/config/backup', {'csrf': tok, 'secrets': 'on', 'password': PASSWORD}).json
    now = int(time.time())
    for first in (now + 100 * 365 * 86400, now):     # old format (expiry) and new (issue time)
        m = Http(app.port)
        m.cookies['mep_s'] = _mint(backup['session_secret'], backup['web_password_hash'], first)
        assert m.get('/settings').status == 302, first
    # the server's own clock decides the age, whatever the cookie says
    for e in app.app.web_sessions:
        e[1] -= auth.SESSION_S + 1
    assert c.get('/settings').status == 302 and b.get('/settings').status == 302
    # a password change ends every other session
    b = logged_in(app)
    c = logged_in(app)
    tok = b.get('/api/config').json['csrf']
    r = b.post('/password', {'csrf': tok, 'old': PASSWORD, 'new': 'brand-new-pw-42',
                             'new2': 'brand-new-pw-42'})
    assert r.status == 200 and r.json == {'ok': True, 'note': 'Password changed.'}
    assert b.get('/settings').status == 200 and c.get('/settings').status == 302


# --- 1: protected settings --------------------------------------------------------------------

def test_keys_and_public_switches_need_the_password(app):
    h = logged_in(app)
    cfg = app.app.config
    tok = h.get('/api/config').json['csrf']
    hdr = {'Content-Type': 'application/json', 'X-CSRF-Token': tok}

    def save(section, values, clear=(), pw=None):
        body = {'section': section, 'values': values, 'clear': list(clear)}
        if pw:
            body['current_password'] = pw
        return h.post('/api/config', json.dumps(body), headers=hdr)
    key0, secret0 = cfg['ota_key'], cfg['session_secret']
    new_key = '5c' * 32
    cases = [('security', {'ota_key': new_key}, ()), ('security', {}, ('session_secret',)),
             ('security', {'public_dashboard': True}, ()),
             ('security', {'legacy_public': True}, ()),
             ('security', {'web_hosts': 'attacker.example'}, ()),
             ('mqtt', {'mqtt_commands': True}, ()), ('security', {}, ('legacy_token',))]
    for n, (section, values, clear) in enumerate(cases):
        for pw in (None, 'wrong password!') if n == 0 else (None,):
            r = save(section, values, clear, pw)
            assert r.status == 403 and 'web password' in r.json['error'], (values, clear, pw)
            assert 'current_password' in r.json['fields']
    assert cfg['ota_key'] == key0 and cfg['session_secret'] == secret0
    assert not cfg['public_dashboard'] and not cfg['legacy_public'] and not cfg['web_hosts']
    assert not cfg['mqtt_commands']
    app.logs.clear()
    r = save('security', {'ota_key': new_key, 'public_dashboard': True}, pw=PASSWORD)
    assert r.status == 200 and r.json['ok'] is True
    assert cfg['ota_key'] == new_key and cfg['public_dashboard'] is True
    line = [x for x in app.logs if 'protected settings changed' in x]
    assert line and 'ota_key' in line[0] and 'public_dashboard' in line[0]
    saved = [x for x in app.logs if x.startswith('web: settings saved')]
    assert saved and 'ota_key' in saved[0]
    assert not any(new_key in x for x in app.logs)
    # closing up again needs no password
    r = save('security', {'public_dashboard': False})
    assert r.status == 200 and cfg['public_dashboard'] is False
    # the backup with secrets
    r = h.post('/config/backup', {'csrf': tok, 'secrets': 'on'})
    assert r.status == 403 and new_key not in r.text
    r = h.post('/config/backup', {'csrf': tok, 'secrets': 'on', 'password': 'nope nope nope'})
    assert r.status == 403
    r = h.post('/config/backup', {'csrf': tok, 'secrets': 'on', 'password': PASSWORD})
    assert r.status == 200 and r.json['ota_key'] == new_key
    # restoring a backup that changes a key
    d = r.json
    d['ota_key'] = 'a7' * 32
    body = json.dumps(d)
    hdr = {'Content-Type': 'application/json', 'X-CSRF-Token': tok}
    r = h.post('/config/restore', body, headers=hdr)
    assert r.status == 403 and 'ota_key' in r.json['password_needed']
    assert cfg['ota_key'] == new_key
    r = h.post('/config/restore', body, headers=dict(hdr, **{'X-Confirm-Password': PASSWORD}))
    assert r.status == 200 and cfg['ota_key'] == 'a7' * 32


def test_failed_save_keeps_the_typed_secrets(app):
    """The settings page keeps what is typed in its form (test_web_browser.py); the API
    stores nothing of a section that has an error, never echoes a typed secret, and stores
    it when the page sends it again with the error fixed."""
    h = logged_in(app)
    tok = h.get('/api/config').json['csrf']
    hdr = {'Content-Type': 'application/json', 'X-CSRF-Token': tok}
    typed = 'typed-wifi-secret-77'
    r = h.post('/api/config', json.dumps({'section': 'wifi', 'values': {
        'hostname': 'bad host!', 'wifi_ssid': 'home', 'wifi_password': typed}}), headers=hdr)
    assert r.status == 400 and 'letters' in r.json['fields']['hostname']
    assert typed not in r.text
    c = app.app.config
    assert c['wifi_password'] == '' and c['hostname'] == 'mep-test' and c['wifi_ssid'] == ''
    r = h.post('/api/config', json.dumps({'section': 'wifi', 'values': {
        'hostname': 'mep-test2', 'wifi_ssid': 'home', 'wifi_password': typed}}), headers=hdr)
    assert r.status == 200 and typed not in r.text
    assert c['wifi_password'] == typed and c['hostname'] == 'mep-test2'
    assert typed not in h.get('/api/config').text
    assert not any(typed in x for x in app.logs)
    # the old form's address takes no posts any more
    r = h.post('/config', {'csrf': tok, 'hostname': 'x'})
    assert r.status == 405 and c['hostname'] == 'mep-test2'


# --- 8: OTA downgrades -------------------------------------------------------------------------

def test_ota_refuses_older_bundles_unless_confirmed(app, tmp_path):
    app.app.release = '0.2.0+14.g6738569'     # as release.py says on a flashed board
    h = logged_in(app)
    st = h.get('/api/status').json            # as the update page gets it
    assert st['version'] == '0.2.0+14.g6738569'
    hdr = {'Content-Type': 'application/octet-stream', 'X-CSRF-Token': st['csrf']}
    old = make_bundle(app.app, str(tmp_path), device='mep', version='0.2.0+9.ga5b7acc')
    r = h.post('/api/ota', old, headers=hdr)
    assert r.status == 400 and 'older than the running' in r.json['error']
    # a bare commit hash is no version: it orders against nothing ('a5b7acc' is not older
    # than '43be387', nor newer)
    for v in ('a5b7acc', 'dev'):
        r = h.post('/api/ota', make_bundle(app.app, str(tmp_path), device='mep', version=v),
                   headers=hdr)
        assert r.status == 400 and 'does not say whether it is newer' in r.json['error'], v
    assert not os.path.exists(os.path.join(app.data_dir, 'ota_new', '.complete'))
    r = h.post('/api/ota', old, headers=dict(hdr, **{'X-Confirm-Password': 'wrong one!!'}))
    assert r.status == 400 and 'wrong' in r.json['error']
    r = h.post('/api/ota', old, headers=dict(hdr, **{'X-Confirm-Password': PASSWORD}))
    assert r.status == 200 and r.json['version'] == '0.2.0+9.ga5b7acc'
    new = make_bundle(app.app, str(tmp_path), device='mep', version='0.2.0+100.g43be387')
    r = h.post('/api/ota', new, headers=hdr)               # 100 > 14 (not as text)
    assert r.status == 200 and r.json['version'] == '0.2.0+100.g43be387'
    new = make_bundle(app.app, str(tmp_path), device='mep', version='0.10.0+0.g1234567')
    r = h.post('/api/ota', new, headers=hdr)               # 0.10.0 > 0.2.0 (not as text)
    assert r.status == 200
    assert any('downgrade from' in x for x in app.logs)


# --- 9: legacy endpoints -----------------------------------------------------------------------

def test_legacy_endpoints_private_by_default_with_a_private_address(app):
    app.wait_readings(2)
    anon = Http(app.port)
    assert anon.get('/getDashDataWS').status == 401
    assert anon.get('/metrics').status == 401
    h = logged_in(app)
    shown = h.get('/api/config').json['legacy_path']        # shown on the settings page
    tok = app.app.config['legacy_token']
    assert len(tok) >= 32 and shown == '/' + tok
    r = anon.get('/%s/getDashDataWS' % tok)
    assert r.status == 200 and 'Fwd_W' in r.json
    r = anon.get('/%s/metrics' % tok)
    assert r.status == 200 and 'mep_link' in r.text
    for bad in ('/%s/getDashDataWS' % ('0' * len(tok)), '/%s/getDashDataWS' % tok[:-1],
                '/%s/config' % tok, '/%s/x/metrics' % tok):
        assert anon.get(bad).status == 404, bad
    assert h.get('/metrics').status == 200


# --- passwords -----------------------------------------------------------------------------------

def test_short_passwords_refused(tmp_path):
    app = Running(str(tmp_path), password=None)
    try:
        h = Http(app.port)
        tok = h.token()
        r = h.post('/setup', {'csrf': tok, 'password': '123456789', 'password2': '123456789'})
        assert r.status == 400 and '10 to 128' in r.json['error']
        r = h.post('/setup', json.dumps({'password': '123456789', 'password2': '123456789'}),
                   headers={'Content-Type': 'application/json', 'X-CSRF-Token': tok})
        assert r.status == 400 and '10 to 128' in r.json['error'] and r.json['field'] == 'password'
        assert not app.app.config['web_password_hash']
        r = h.post('/setup', {'csrf': tok, 'password': '1234567890', 'password2': '1234567890'})
        assert r.status == 302
        tok = h.get('/api/config').json['csrf']
        r = h.post('/password', {'csrf': tok, 'old': '1234567890', 'new': 'short-pw!',
                                 'new2': 'short-pw!'})
        assert r.status == 400 and '10 to 128' in r.json['error']
        assert app.app.config.check_password('1234567890')
    finally:
        app.stop()


def test_password_hashing_does_not_stall_the_link(app):
    from system import passwords
    app.wait_readings(5)
    t = time.monotonic()
    passwords.pbkdf2_sha256(b'calibrate', b'salt', 20000)
    per_round = (time.monotonic() - t) / 20000
    app.app.config.pw_iterations = int(2.0 / per_round)       # about 2 s of hashing
    h = logged_in(app)
    tok = h.get('/api/config').json['csrf']
    t0 = time.monotonic()
    r = h.post('/password', {'csrf': tok, 'old': PASSWORD, 'new': 'slow-hash-pw-1',
                             'new2': 'slow-hash-pw-1'})
    t1 = time.monotonic()
    assert r.status == 200 and app.app.config.check_password('slow-hash-pw-1')
    assert t1 - t0 > 1.0, t1 - t0
    gap = app.max_gap(t0, t1)
    during = [t for t in list(app.stamps) if t0 < t < t1]
    print('password hashed in %.2f s; %d readings meanwhile, longest time without one: %.2f s'
          % (t1 - t0, len(during), gap))
    # the link went on reading while the hash ran (a hash that held the loop would let
    # at most the one reading through that was due when it ended, not two): counted, not timed
    assert len(during) >= 2, 'only %d readings while the password was hashed (%.2f s)' \
        % (len(during), t1 - t0)


# --- CSRF failures --------------------------------------------------------------------------

def test_csrf_failure_is_a_page_or_json(app):
    h = logged_in(app)
    r = h.post('/password', {'old': PASSWORD, 'new': 'x' * 12, 'new2': 'x' * 12})
    assert r.status == 403 and r.headers['content-type'].startswith('text/html')
    assert 'CSRF' in r.text and '<a href="/">Back</a>' in r.text
    r = h.post('/reboot', b'{}', headers={'X-CSRF-Token': '0' * 32,
                                          'Content-Type': 'application/json'})
    assert r.status == 403 and 'CSRF' in r.json['error']
    assert app.app.reboot_requested is False


def test_back_off_key_is_the_client_address_without_the_port():
    """The unix port gives a raw sockaddr: its port differs per connection, so keying the
    back-off on it would give every connection a fresh budget of failed logins."""
    from microdot.microdot import Request, NoCaseDict
    from web.guard import client_addr

    def req(addr):
        return Request(None, addr, 'GET', '/', '1.1', NoCaseDict())
    assert client_addr(req(('192.168.1.20', 50123))) == '192.168.1.20'
    a = bytearray(b'\x02\x00\xc7\x38\xc0\xa8\x01\x14' + bytes(8))      # as MicroPython gives it
    b = bytearray(b'\x02\x00\x13\x88\xc0\xa8\x01\x14' + bytes(8))      # the next connection
    assert client_addr(req(a)) == client_addr(req(b)) == '192.168.1.20'
    v6 = bytearray(b'\x0a\x00\x13\x88' + bytes(4) + bytes(15) + b'\x01' + bytes(4))
    assert client_addr(req(v6)) == '0000:0000:0000:0000:0000:0000:0000:0001'
