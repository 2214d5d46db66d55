# Web login: sessions kept on the device, a signed session cookie and a per-browser CSRF token
# (the failed-login back-off is in web/login.py).
#
# Session cookie  mep_s = <issued>.<nonce>.<sig>   sig = HMAC-SHA256(session_secret,
#   'S' issued nonce pwtag) with pwtag = the tail of the password hash. A cookie is only
#   good while its nonce is in the device's list of live sessions (at most MAX_SESSIONS, kept
#   in RAM on the app object): logout removes it, a password change empties the list, a
#   reboot forgets them all, and the age is counted from the issue time the device stored,
#   never from the cookie (SESSION_S at most). So a cookie minted with a leaked session
#   secret (a backup with secrets) is refused.
# CSRF cookie     mep_c = <nonce> (random, set with the first page); the token that every
#   POST/PUT/PATCH/DELETE must carry (form field "csrf" or header X-CSRF-Token) is
#   HMAC(session_secret, 'C' nonce)[:32]. A foreign Origin header is refused as well.
import os
from binascii import hexlify
from system import hmac_sha256
from compat import unix_time

SESSION = 'mep_s'
CSRF = 'mep_c'
SESSION_S = 12 * 3600
MAX_SESSIONS = 8
STATE_METHODS = ('POST', 'PUT', 'PATCH', 'DELETE')


def _rand_hex(n):
    try:
        return hexlify(os.urandom(n)).decode()
    except AttributeError:
        import random
        return ''.join('%02x' % random.getrandbits(8) for _ in range(n))


def _mac(ctx, text):
    return hmac_sha256.hexdigest(ctx.config['session_secret'].encode(), text.encode())


def _pwtag(ctx):
    return ctx.config['web_password_hash'][-16:]


def has_password(ctx):
    return bool(ctx.config['web_password_hash'])


def _live(ctx):
    """[[nonce, issued unix time], ...] of the sessions the device has issued (oldest first)."""
    lst = getattr(ctx, 'web_sessions', None)
    if lst is None:
        lst = ctx.web_sessions = []
    return lst


def make_session(ctx, now=None):
    t = unix_time() if now is None else now
    nonce = _rand_hex(8)
    live = _live(ctx)
    live.append([nonce, t])
    while len(live) > MAX_SESSIONS:
        live.pop(0)
    body = '%d.%s' % (t, nonce)
    return body + '.' + _mac(ctx, 'S' + body + _pwtag(ctx))


def _entry(ctx, value):
    """The live-session entry of a cookie value with a good signature, or None."""
    if not value or not has_password(ctx):
        return None
    p = value.split('.')
    if len(p) != 3 or len(p[2]) != 64:
        return None
    want = _mac(ctx, 'S%s.%s%s' % (p[0], p[1], _pwtag(ctx)))
    if not hmac_sha256.equal(want.encode(), p[2].encode()):
        return None
    for e in _live(ctx):
        if e[0] == p[1] and str(e[1]) == p[0]:
            return e
    return None


def session_ok(ctx, value, now=None):
    e = _entry(ctx, value)
    if e is None:
        return False
    age = (unix_time() if now is None else now) - e[1]
    if 0 <= age < SESSION_S:
        return True
    _live(ctx).remove(e)           # expired (or the clock went back): gone for good
    return False


def session_id(ctx, request):
    """The nonce of this request's live session, or None."""
    v = request.cookies.get(SESSION)
    return v.split('.')[1] if logged_in(ctx, request) else None


def end_session(ctx, value):
    """Logout: the session of this cookie value is no longer accepted."""
    e = _entry(ctx, value)
    if e is not None:
        _live(ctx).remove(e)


def end_all_sessions(ctx):
    _live(ctx).clear()


def logged_in(ctx, request):
    g = request.g
    if not hasattr(g, 'auth'):
        g.auth = session_ok(ctx, request.cookies.get(SESSION))
    return g.auth


def csrf_nonce(request):
    """The browser's CSRF nonce (made now when it has none; set_cookies() stores it)."""
    g = request.g
    if not hasattr(g, 'csrf_nonce'):
        n = request.cookies.get(CSRF) or ''
        if len(n) != 16 or not _hexonly(n):
            n = _rand_hex(8)
            g.csrf_new = True
        g.csrf_nonce = n
    return g.csrf_nonce


def _hexonly(s):
    for ch in s:
        if ch not in '0123456789abcdef':
            return False
    return True


def csrf_token(ctx, request):
    return _mac(ctx, 'C' + csrf_nonce(request))[:32]


def cookie_attrs(request):
    return '; Path=/; HttpOnly; SameSite=Strict' + ('; Secure' if request.scheme == 'https' else '')


def set_cookies(request, response):
    """after_request: store a new CSRF nonce and/or session cookie."""
    g = request.g
    hdr = []
    if getattr(g, 'csrf_new', False):
        hdr.append('%s=%s%s' % (CSRF, g.csrf_nonce, cookie_attrs(request)))
    s = getattr(g, 'set_session', None)
    if s is not None:
        hdr.append('%s=%s%s; Max-Age=%d' % (SESSION, s, cookie_attrs(request),
                                            SESSION_S if s else 0))
    if hdr:
        old = response.headers.get('Set-Cookie')
        if old:
            hdr = (old if isinstance(old, list) else [old]) + hdr
        response.headers['Set-Cookie'] = hdr
    return response


def _host(url):
    i = url.find('//')
    return url[i + 2:].split('/')[0] if i >= 0 else url


def check_csrf(ctx, request):
    """None when a state-changing request may proceed, else an error text."""
    if request.method not in STATE_METHODS:
        return None
    origin = request.headers.get('Origin')
    if origin and origin != 'null' and _host(origin) != request.headers.get('Host', ''):
        return 'cross-site request refused (Origin %s)' % origin[:60]
    nonce = request.cookies.get(CSRF)
    if not nonce:
        return 'CSRF cookie missing: reload the page and try again'
    tok = request.headers.get('X-CSRF-Token')
    if tok is None:
        form = safe_form(request)
        tok = form.get('csrf') if form else None
    if not tok or not hmac_sha256.equal(tok.encode(), csrf_token(ctx, request).encode()):
        return 'CSRF token missing or wrong: reload the page and try again'
    return None


def safe_form(request):
    """The url-encoded form, or None (never raises)."""
    try:
        return request.form
    except Exception:
        return None
