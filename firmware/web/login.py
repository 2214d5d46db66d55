# /login, /logout, /setup (first password), /password (change it), /api/session.
# Routes: web/server.py.
#
# The login and first-run pages are static (web/src/login.html, setup.html, built by
# tools/build_web.py). They take the CSRF token from GET /api/session and post JSON with the
# X-CSRF-Token header; the url-encoded form (field "csrf") is accepted as well. Every answer
# is JSON, except that a plain form post (no X-CSRF-Token header) that succeeds is redirected
# to where it leads. Failed logins back off per client address (web/guard.py).
from microdot import redirect
from web import auth
from web.guard import fails, retry_after, failed, client_addr

NO_STORE = {'Cache-Control': 'no-store'}


def local_path(n):
    """`n` when it is a path on this device ('/...'), else '/': no scheme, no '//host', no
    backslash, no control character or space (browsers drop tabs and newlines: '/\t/host')."""
    if not isinstance(n, str) or not n.startswith('/') or len(n) > 512:
        return '/'
    for ch in n:
        if ord(ch) <= 32 or ord(ch) == 127 or ch == '\\':
            return '/'
    if n.startswith('//') or n.startswith('/%') and n[:4].lower() in ('/%09', '/%0a', '/%0d',
                                                                       '/%2f', '/%5c', '/%20'):
        return '/'
    if '%' in n:
        low = n.lower()
        for bad in ('%00', '%09', '%0a', '%0d', '%5c'):
            if bad in low:
                return '/'
    return n


def _body(request):
    """The posted JSON object or url-encoded form, or None (no body, malformed, not an
    object)."""
    try:
        j = request.json
    except ValueError:
        return None
    if j is not None:
        return j if isinstance(j, dict) else None
    return auth.safe_form(request)


def _text(f, k):
    v = f.get(k)
    return v if isinstance(v, str) else ''


def _next(request, body):
    """Where a login leads: 'next' of the body or of the query string, local paths only."""
    n = request.args.get('next') or ''
    if body and body.get('next'):
        n = body.get('next')
    return local_path(n)


def _fetch(request):
    """The pages' fetch() calls send X-CSRF-Token; a plain form post does not."""
    return bool(request.headers.get('X-CSRF-Token'))


def _err(text, status, field=None, headers=None, where=None):
    """{"error": text} (+ "field": the input it is about, "next": where to go instead)."""
    d = {'error': text}
    if field:
        d['field'] = field
    if where:
        d['next'] = where
    h = NO_STORE
    if headers:
        h = dict(NO_STORE)
        h.update(headers)
    return d, status, h


def _back_off(text, wait):
    """429 while this client has to wait after failed passwords (web/guard.py)."""
    d, st, h = _err(text % wait, 429, headers={'Retry-After': str(wait)})
    d['retry_after'] = wait
    return d, st, h


def _done(request, where):
    """Success: {"ok": true, "next": where} for fetch(), a redirect for a plain form post."""
    if _fetch(request):
        return {'ok': True, 'next': where}, 200, NO_STORE
    return redirect(where)


def _static(request, name):
    from web.dash import static_page
    return static_page(request, name)


async def session(ctx, request):
    """GET /api/session: what the login and setup pages need (public)."""
    return {'csrf': auth.csrf_token(ctx, request), 'has_password': auth.has_password(ctx),
            'logged_in': bool(auth.logged_in(ctx, request))}, 200, NO_STORE


async def login_page(ctx, request):
    if not auth.has_password(ctx):
        return redirect('/setup')
    return _static(request, 'login.html')


async def login(ctx, request):
    if not auth.has_password(ctx):
        if _fetch(request):
            return _err('No web password is set yet: set one first.', 409, where='/setup')
        return redirect('/setup')
    st = fails(request)
    addr = client_addr(request)
    wait = retry_after(st, addr)
    if wait:
        return _back_off('Too many failed logins: wait %d s.', wait)
    f = _body(request)
    if f is None or not isinstance(f.get('password'), str):
        return _err('Send the password: JSON {"password": ..., "next": ...} or the login form.',
                    400, 'password')
    if await ctx.config.check_password_async(f.get('password')):
        st.pop(addr, None)
        request.g.set_session = auth.make_session(ctx)
        ctx.log('web: login from %s' % addr)
        return _done(request, _next(request, f))
    failed(st, addr)
    ctx.log('web: failed login from %s' % addr)
    return _err('Wrong password.', 401, 'password')


async def logout(ctx, request):
    """Ends this browser's session on the device (the cookie is no longer accepted)."""
    auth.end_session(ctx, request.cookies.get(auth.SESSION))
    request.g.set_session = ''
    ctx.log('web: logout from %s' % client_addr(request))
    return _done(request, '/login' if auth.has_password(ctx) else '/')


async def setup_page(ctx, request):
    if auth.has_password(ctx):
        return redirect('/login')
    return _static(request, 'setup.html')


async def setup(ctx, request):
    if auth.has_password(ctx):
        return _err('A web password is already set: log in and change it in the settings.', 409,
                    where='/login')
    f = _body(request)
    if f is None or not isinstance(f.get('password'), str):
        return _err('Send the new password twice: JSON {"password": ..., "password2": ...} '
                    'or the setup form.', 400, 'password')
    if f.get('password') != f.get('password2'):
        return _err('The two passwords differ.', 400, 'password2')
    err = await ctx.config.set_password_async(f.get('password'))
    if err:
        return _err(err['web_password_hash'], 400, 'password')
    ctx.config.save()
    auth.end_all_sessions(ctx)
    ctx.log('web: password set (first run)')
    request.g.set_session = auth.make_session(ctx)
    return _done(request, '/')


async def change_password(ctx, request):
    """POST /password (the settings page): JSON {"ok": true, "note": ...} or {"error": ...};
    fields old, new, new2 as JSON or a url-encoded form."""
    f = _body(request)
    if f is None:
        return _err('Send the password form (fields "old", "new", "new2").', 400)
    wait = retry_after(fails(request), client_addr(request))
    if wait:
        return _back_off('Too many wrong passwords: wait %d s.', wait)
    if not await ctx.config.check_password_async(_text(f, 'old')):
        failed(fails(request), client_addr(request))
        return _err('The current password is wrong.', 400, 'old')
    if _text(f, 'new') != _text(f, 'new2'):
        return _err('The two new passwords differ.', 400, 'new2')
    err = await ctx.config.set_password_async(_text(f, 'new'))
    if err:
        return _err(err['web_password_hash'], 400, 'new')
    ctx.config.save()
    auth.end_all_sessions(ctx)        # every other browser has to log in again
    ctx.log('web: password changed (all sessions ended)')
    request.g.set_session = auth.make_session(ctx)
    return {'ok': True, 'note': 'Password changed.'}, 200, NO_STORE
