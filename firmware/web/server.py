# The device's web app: create_app(ctx) builds the Microdot app, serve(ctx) runs it.
#
# Access: PUBLIC paths need nothing; DASH paths need a login unless cfg['public_dashboard'];
# everything else needs a login. Until a web password is set every page leads to /setup.
# Every POST/PUT/PATCH/DELETE needs the CSRF token (web/auth.py). Bodies over MAX_BODY are
# refused with 413, except the OTA upload, which streams up to MAX_OTA. Size and time limits of
# requests and the cap on connections: web/conn.py (serve() runs the app behind it).
# A request whose Host header is not one of this module's names (its IP address, hostname,
# hostname.local, cfg['web_hosts'], and on the PC localhost/127.0.0.1) is refused with 421:
# a page on another site cannot reach the module through DNS rebinding.
# The legacy endpoints are also served without a login under /<cfg['legacy_token']>/.
#
# Heap: only this module, web/auth.py and Microdot stay loaded. Every route in ROUTES names
# the module under web/ that serves it; that module is imported when a request needs it and,
# on MicroPython (or with compat.UNLOAD set), dropped again as soon as no request is using it,
# together with what it pulled in from DROP. A response body that is still streaming keeps
# working (its generator holds the module's globals) but must not import anything itself:
# page functions do their imports before they return. The dashboard's polled JSON
# (/api/now, /api/recent) is served from here, so polling never loads a page module.
import sys
from microdot import Microdot, Request, redirect, send_file
from microdot.microdot import urlencode
import compat
from system import hmac_sha256
from web import auth
from web.conn import MAX_BODY, MAX_HEAD, SECURITY, PAGE_SECURITY   # MAX_BODY: forms, JSON

MAX_OTA = 3 * 1024 * 1024  # app bundles (streamed to flash)
STREAMED = ('/api/ota',)
PUBLIC = ('/login', '/setup', '/logout', '/api/session', '/getDashDataWS', '/metrics')
LEGACY = ('/getDashDataWS', '/metrics')
DASH = ('/', '/api/now', '/api/recent', '/api/history', '/api/history.csv')
CACHE_S = 31536000
STATIC_TYPES = {'js': 'application/javascript', 'css': 'text/css'}
ASSETS = ('uplot.js', 'uplot.css', 'app.js', 'app.css', 'settings.js', 'dashboard.js', 'status.js',
          'ota.js', 'login.js')
CHUNK = 1024

JSON_PATHS = ('/config/restore',)

# One route per line: method, path, module in web/, function `async def f(ctx, request)`.
# (A text table: a tuple per route would cost ~120 bytes of heap each.)
ROUTES = """
GET / dash dashboard
GET /api/now server api_now
GET /api/recent server api_recent
GET /api/history dash api_history
GET /api/history.csv dash api_history_csv
GET /status dash status_page
GET /api/status dash api_status
GET /api/diagnostics dash api_diagnostics
GET /login login login_page
GET /api/session login session
POST /login login login
POST /logout login logout
GET /setup login setup_page
POST /setup login setup
POST /password login change_password
GET /tinker tinker tinker_page
GET /api/log tinker api_log
GET /api/link tinker api_link
POST /api/mep tinker api_mep
GET /config cfg config_page
GET /settings cfgapi settings_page
GET /api/config cfgapi get_config
POST /api/config cfgapi save_config
POST /api/mqtt/test nettest mqtt_test
POST /api/wifi/scan nettest wifi_scan
GET /config/backup cfg backup
POST /config/backup cfg backup_secrets
POST /config/restore cfg restore
GET /ota update ota_page
POST /api/ota update ota_upload
POST /reboot update reboot
GET /getDashDataWS legacy_routes dash_data
GET /metrics legacy_routes prometheus
"""
METHODS = ('GET', 'POST')

# Modules the pages load that are dropped again once no request needs them (unless they
# were already loaded when the requests began: then someone else uses them).
DROP = ('web.login', 'web.dash', 'web.tinker', 'web.cfg', 'web.cfgapi', 'web.guard',
        'web.nettest',
        'web.update', 'web.legacy_routes', 'web.legacy', 'web.metrics', 'system.ota',
        'web.upload', 'web.imgupdate', 'system.imgota', 'system.signed', 'system.update_status',
        'system.version',
        'mep.tables', 'system.tz', 'periods')
_lazy = [0, None]          # requests running in a page module, DROP names loaded before them


def _is_api(request):
    return request is not None and (request.path.startswith('/api/') or
                                    request.path in JSON_PATHS)


def esc(s):
    return str(s).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;') \
        .replace('"', '&quot;').replace("'", '&#39;')


def error(request, status, text, headers=None):
    """A short error: JSON for /api/ (and fetch() calls), a small page otherwise."""
    h = {'Cache-Control': 'no-store'}
    if headers:
        h.update(headers)
    if _is_api(request) or (request is not None and request.headers.get('X-CSRF-Token')):
        return {'error': text}, status, h
    h['Content-Type'] = 'text/html; charset=UTF-8'
    back = '/'
    if request is not None and find('GET', request.path):
        back = request.path
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width,initial-scale=1"><title>Error %d</title><link '
            'rel="stylesheet" href="/static/app.css"></head><body><main><h1>Error %d</h1><p '
            'class="err">%s</p><p><a href="%s">Back</a></p></main></body></html>'
            % (status, status, esc(text), esc(back))), status, h


def host_names(ctx):
    """The names this module answers to (lower case, without port)."""
    c = ctx.config
    out = []
    for h in (c['hostname'].lower(), getattr(ctx, 'web_boot_host', None)):
        if h:                        # the new name and the one the network knows until reboot
            out += [h, h + '.local']
    for n in (c.get('web_hosts') or '').split(','):
        n = n.strip().lower()
        if n:
            out.append(n)
    w = getattr(ctx, 'wifi', None)
    try:
        ip = w.ip() if w is not None else None
    except OSError:                  # the interface is going up or down
        ip = None
    if ip:
        out.append(ip)
    if getattr(ctx, 'chip', None) == 'host':
        out += ['localhost', '127.0.0.1']
    return out


def host_ok(ctx, request):
    h = (request.headers.get('Host') or '').lower()
    i = h.rfind(':')
    if i > 0 and h[i + 1:].isdigit():
        h = h[:i]
    return bool(h) and h in host_names(ctx)


def legacy_path(ctx, path):
    """'/getDashDataWS' or '/metrics' for '/<legacy_token>/getDashDataWS' etc., else None."""
    if path.count('/') != 2:
        return None
    i = path.rfind('/')
    p = path[i:]
    if p not in LEGACY:
        return None
    try:
        tok = ctx.config['legacy_token']
    except KeyError:
        return None
    if tok and len(path) == len(tok) + 1 + len(p) and hmac_sha256.equal(
            path[1:i].encode(), tok.encode()):
        return p
    return None


def _access(ctx, request):
    """None, or the response for a request that may not proceed."""
    p = request.path
    if p in PUBLIC or p.startswith('/static/') or getattr(request.g, 'legacy_ok', False):
        return None
    if p in DASH and ctx.config['public_dashboard']:
        return None
    if not auth.has_password(ctx):
        if _is_api(request) or request.method != 'GET':
            return error(request, 401, 'no web password set yet: open /setup first')
        return redirect('/setup')
    if auth.logged_in(ctx, request):
        return None
    if _is_api(request) or request.method != 'GET':
        return error(request, 401, 'login required')
    if request.query_string:
        p += '?' + request.query_string
    return redirect('/login?next=' + urlencode(p))


# --- static assets, streaming ------------------------------------------------------------

_static = []


def static_dir():
    """web/static beside this module or, when the app is frozen into the image (its modules
    then have no place in the filesystem), in the first sys.path entry that has it."""
    if _static:
        return _static[0]
    import os
    try:
        f = __file__
        d = f.rsplit('/', 1)[0] if '/' in f else '.'
    except NameError:
        d = 'web'
    for p in [d] + [e + '/web' for e in sys.path if e]:
        try:
            os.stat(p + '/static')
        except OSError:
            continue
        _static.append(p + '/static')
        return _static[0]
    return d + '/static'


def chunked(parts, size=CHUNK):
    """Join an iterable of str into pieces of about `size` (fewer socket writes). A piece is
    never longer than `size` or the longest part, so no block bigger than that is needed."""
    buf = []
    n = 0
    for p in parts:
        if n and n + len(p) > size:
            yield ''.join(buf)
            buf = []
            n = 0
        buf.append(p)
        n += len(p)
    if buf:
        yield ''.join(buf)


# --- the JSON the dashboard polls -----------------------------------------------------------

# reading key -> decimals in /api/now (None: whole number)
ROUND = {'u': 1, 'i': 2, 'pf': 3, 'freq': 3}
INFO_KEYS = ('manufacturer', 'model', 'fw', 'hw', 'serial')
RECENT_FIELDS = ('p_in', 'p_out')


def _round(k, v):
    if v is None or isinstance(v, bool):
        return v
    d = ROUND.get(k.split('_')[0])
    if d is None:
        return int(round(v))
    return round(v, d)


def now_dict(ctx):
    """The latest reading and link state (/api/now: 'tz' is the configured time zone, for the
    dashboard's dates)."""
    r = ctx.poller.latest
    out = {}
    if r:
        for k in r:
            if '_avg_l' not in k:          # per-phase averages: not on the dashboard
                out[k] = _round(k, r[k])
    st = ctx.link.engine
    info = {}
    for k in INFO_KEYS:
        v = ctx.poller.info.get(k)
        if v is not None:
            info[k] = str(v).strip()
    return {'r': out or None, 'link': st.link, 'error': st.last_error or ctx.poller.last_error,
            'cycle_ms': ctx.poller.cycle_ms, 'readings': ctx.poller.readings, 'info': info,
            'tz': ctx.config.get('timezone') or 'Europe/Copenhagen'}


def _columns(cols):
    """Stream (name, values) pairs (ring.Ring.stream) as JSON text pieces of up to 32
    values: {"name": [values], ...}."""
    yield '{'
    sep = ''
    for k, vals in cols:
        yield '%s"%s":[' % (sep, k)
        part = []
        first = True
        for v in vals:
            part.append('null' if v is None else str(int(v) if v == int(v) else v))
            if len(part) == 32:
                yield ('' if first else ',') + ','.join(part)
                first = False
                part = []
        if part:
            yield ('' if first else ',') + ','.join(part)
        yield ']'
        sep = ','
    yield '}'


async def api_now(ctx, request):
    d = now_dict(ctx)
    d['login'] = bool(auth.logged_in(ctx, request))   # the public dashboard hides the rest
    return d, 200, {'Cache-Control': 'no-store'}


async def api_recent(ctx, request):
    try:
        since = int(request.args.get('since', '0'))
    except ValueError:
        return error(request, 400, 'since must be a whole number (unix seconds)')
    cols = ctx.store.ring.stream(since, RECENT_FIELDS)
    return chunked(_columns(cols)), 200, {'Content-Type': 'application/json',
                                          'Cache-Control': 'no-store'}


# --- routing to the page modules ------------------------------------------------------------

def find(method, path):
    """[module, function] serving method + path (from ROUTES), or None."""
    if method == 'HEAD':
        method = 'GET'
    if ' ' in path or '\n' in path:
        return None
    key = '\n%s %s ' % (method, path)
    i = ROUTES.find(key)
    if i < 0:
        return None
    i += len(key)
    return ROUTES[i:ROUTES.index('\n', i)].split(' ')


class _Paths:
    """A Microdot URL pattern matching every ROUTES path served with one method."""

    def __init__(self, method, ctx):
        self.method = method
        self.ctx = ctx

    def match(self, path):
        return {} if _route(self.ctx, self.method, path) else None


def _route(ctx, method, path):
    r = find(method, path)
    if r is None and method in ('GET', 'HEAD'):
        p = legacy_path(ctx, path)
        if p is not None:
            r = find(method, p)
    return r


async def call(ctx, request, r):
    """Serve a request with function r[1] of module web.<r[0]>, importing it if needed."""
    if r[0] == 'server':
        return await globals()[r[1]](ctx, request)
    lz = _lazy
    if not lz[0] and compat.UNLOAD:
        lz[1] = [n for n in DROP if n in sys.modules]
    lz[0] += 1
    try:
        name = 'web.' + r[0]
        __import__(name)
        return await getattr(sys.modules[name], r[1])(ctx, request)
    finally:
        lz[0] -= 1
        if not lz[0]:
            keep = lz[1]
            lz[1] = None
            if keep is not None:
                compat.unload(*[n for n in DROP if n not in keep])


def add_routes(app, ctx):
    """Put ROUTES into app's url_map: one entry per method, served through call()."""
    for m in METHODS:
        app.url_map.append(([m], _Paths(m, ctx), _handler(ctx, m), '', None))


def _handler(ctx, method):
    async def handle(request, **kw):
        return await call(ctx, request, _route(ctx, method, request.path))
    return handle


def _secure(response):
    h = response.headers
    for k, v in SECURITY:
        h[k] = v
    if h.get('Content-Type', '').startswith('text/html'):
        for k, v in PAGE_SECURITY:
            h[k] = v
    return response


def create_app(ctx):
    Request.max_content_length = MAX_OTA
    Request.max_body_length = MAX_BODY
    Request.max_readline = MAX_HEAD + 2     # web/conn.py holds the head to MAX_HEAD
    app = Microdot()
    ctx.web_boot_host = ctx.config['hostname'].lower()
    ctx.web_served = getattr(ctx, 'web_served', 0)

    @app.before_request
    async def guard(request):
        if not host_ok(ctx, request):
            return error(request, 421, 'this module is not reached by the name %r: open it by '
                         'its IP address or hostname, or add the name to "Other names of this '
                         'module" in the settings' % (request.headers.get('Host') or '')[:60])
        if legacy_path(ctx, request.path):
            request.g.legacy_ok = True
        n = request.content_length
        if n > MAX_BODY and request.path not in STREAMED:
            return error(request, 413, 'request body too large (max %d bytes)' % MAX_BODY)
        if request.method in auth.STATE_METHODS:
            why = auth.check_csrf(ctx, request)
            if why:
                return error(request, 403, why)
        return _access(ctx, request)

    @app.after_request
    async def cookies(request, response):
        ctx.web_served += 1         # the web UI works (system/supervisor.py, proven)
        return _secure(auth.set_cookies(request, response))

    @app.after_error_request
    async def secure(request, response):
        return _secure(response)

    @app.errorhandler(404)
    async def not_found(request):
        return error(request, 404, 'not found')

    @app.errorhandler(405)
    async def not_allowed(request):
        return error(request, 405, 'method not allowed')

    @app.errorhandler(413)
    async def too_large(request):
        return error(request, 413, 'request body too large (max %d bytes)' % MAX_OTA)

    @app.errorhandler(400)
    async def bad(request):
        return 'bad request\n', 400

    @app.errorhandler(ValueError)
    async def bad_value(request, exc):
        return error(request, 400, 'bad request: %s' % (str(exc)[:100] or 'malformed input'))

    @app.errorhandler(500)
    async def internal(request):
        return error(request, 500, 'internal error (see the device log)')

    @app.get('/static/<name>')
    async def static(request, name):
        ext = name.rsplit('.', 1)[-1]
        if name not in ASSETS or ext not in STATIC_TYPES:
            return error(request, 404, 'not found')
        path = static_dir() + '/' + name + '.gz'
        try:
            f = open(path, 'rb')
        except OSError:
            return error(request, 404, 'asset %s not built (run ./dev build-web)' % name)
        return send_file(path, content_type=STATIC_TYPES[ext], stream=f, compressed=True,
                         max_age=CACHE_S)

    add_routes(app, ctx)
    if getattr(ctx, 'require_login', None) is None:
        def require_login(request):
            return True if getattr(request.g, 'legacy_ok', False) or \
                auth.logged_in(ctx, request) else False
        ctx.require_login = require_login
    return app


def _streamed(path):
    return path in STREAMED


async def serve(ctx, host='0.0.0.0', port=80):
    """Serve the app behind web/conn.py's limits (until cancelled or app.shutdown())."""
    from web import conn
    app = create_app(ctx)
    ctx.web_app = app
    srv = await compat.asyncio.start_server(conn.handler(app, _streamed, ctx.log), host, port,
                                            backlog=conn.MAX_CONN)
    app.server = srv
    if hasattr(srv, 'serve_forever'):          # CPython
        try:
            await srv.serve_forever()
        except compat.asyncio.CancelledError:
            srv.close()
            raise
    else:
        await srv.wait_closed()
