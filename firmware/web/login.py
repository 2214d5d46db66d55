# /login, /logout, /setup (first password), /password (change it). Routes: web/server.py.
#
# Failed logins are limited per client address in a sliding window (bounded memory). The
# state is plain data kept on the app (request.app.login_fails) so that it outlives this
# module, which is dropped between requests.
from microdot import redirect
from compat import ticks_ms, ticks_diff
from web import auth
from web.html import page, esc, hidden_csrf, message

FAIL_MAX = 5               # failed logins per client within FAIL_WINDOW_MS
FAIL_WINDOW_MS = 60000
GLOBAL_MAX = 30            # failed logins from all clients within the window
MAX_CLIENTS = 16


def fails(request):
    """({address: [ticks, ...]}, [ticks of every failure]) of this app."""
    app = request.app
    st = getattr(app, 'login_fails', None)
    if st is None:
        st = app.login_fails = ({}, [])
    return st


def _trim(lst, now):
    while lst and ticks_diff(now, lst[0]) >= FAIL_WINDOW_MS:
        lst.pop(0)


def retry_after(st, addr):
    """Seconds to wait, or 0 when a login attempt is allowed now."""
    per, every = st
    now = ticks_ms()
    _trim(every, now)
    lst = per.get(addr)
    if lst is not None:
        _trim(lst, now)
        if not lst:
            del per[addr]
            lst = None
    worst = 0
    for l, cap in ((lst, FAIL_MAX), (every, GLOBAL_MAX)):
        if l and len(l) >= cap:
            worst = max(worst, (FAIL_WINDOW_MS - ticks_diff(now, l[0])) // 1000 + 1)
    return worst


def failed(st, addr):
    per, every = st
    now = ticks_ms()
    if addr not in per and len(per) >= MAX_CLIENTS:
        oldest = None
        for a in per:
            if oldest is None or ticks_diff(per[oldest][-1], per[a][-1]) > 0:
                oldest = a
        del per[oldest]
    per.setdefault(addr, []).append(now)
    every.append(now)
    if len(every) > GLOBAL_MAX:
        every.pop(0)


def client_addr(request):
    a = request.client_addr
    return a[0] if isinstance(a, (tuple, list)) else str(a)


def _next(request):
    n = request.args.get('next') or ''
    f = auth.safe_form(request)
    if f and f.get('next'):
        n = f.get('next')
    return n if n.startswith('/') and not n.startswith('//') and '\\' not in n else '/'


def _login_form(ctx, request, msg=None, status=200):
    body = ['<h1>Log in</h1>']
    if msg:
        body.append('<p class="err">%s</p>' % esc(msg))
    body.append('<form method="post" action="/login" class="box">%s'
                '<input type="hidden" name="next" value="%s">'
                '<label>Password <input type="password" name="password" autocomplete='
                '"current-password" required autofocus></label><button>Log in</button></form>'
                % (hidden_csrf(ctx, request), esc(_next(request))))
    return page(ctx, request, 'Log in', '/login', body, status=status)


def _setup_form(ctx, request, msg=None, status=200):
    body = ['<h1>Set the web password</h1><p>This module has no web password yet. Choose one '
            '(8 to 128 characters); it protects the settings, the update page and the raw '
            'meter access.</p>']
    if msg:
        body.append('<p class="err">%s</p>' % esc(msg))
    body.append('<form method="post" action="/setup" class="box">%s'
                '<label>New password <input type="password" name="password" minlength="8" '
                'autocomplete="new-password" required></label>'
                '<label>Repeat <input type="password" name="password2" minlength="8" '
                'autocomplete="new-password" required></label><button>Save</button></form>'
                % hidden_csrf(ctx, request))
    return page(ctx, request, 'Setup', '/setup', body, status=status)


async def login_page(ctx, request):
    if not auth.has_password(ctx):
        return redirect('/setup')
    return _login_form(ctx, request)


async def login(ctx, request):
    if not auth.has_password(ctx):
        return redirect('/setup')
    st = fails(request)
    addr = client_addr(request)
    wait = retry_after(st, addr)
    if wait:
        r = _login_form(ctx, request, 'Too many failed logins: wait %d s.' % wait, 429)
        r[2]['Retry-After'] = str(wait)
        return r
    f = auth.safe_form(request)
    if f is None or not isinstance(f.get('password'), str):
        return _login_form(ctx, request, 'Send the login form (field "password").', 400)
    if await ctx.config.check_password_async(f.get('password')):
        st[0].pop(addr, None)
        request.g.set_session = auth.make_session(ctx)
        ctx.log('web: login from %s' % addr)
        return redirect(_next(request))
    failed(st, addr)
    ctx.log('web: failed login from %s' % addr)
    return _login_form(ctx, request, 'Wrong password.', 401)


async def logout(ctx, request):
    request.g.set_session = ''
    return redirect('/login' if auth.has_password(ctx) else '/')


async def setup_page(ctx, request):
    if auth.has_password(ctx):
        return redirect('/login')
    return _setup_form(ctx, request)


async def setup(ctx, request):
    if auth.has_password(ctx):
        return message(ctx, request, 'Setup', 'A web password is already set; change it '
                       'on the Config page after logging in.', 409, ('/login', 'Log in'))
    f = auth.safe_form(request)
    if f is None or not isinstance(f.get('password'), str):
        return _setup_form(ctx, request, 'Send the form (fields "password", "password2").',
                           400)
    if f.get('password') != f.get('password2'):
        return _setup_form(ctx, request, 'The two passwords differ.', 400)
    err = ctx.config.set_password(f.get('password'))
    if err:
        return _setup_form(ctx, request, err['web_password_hash'], 400)
    ctx.config.save()
    ctx.log('web: password set (first run)')
    request.g.set_session = auth.make_session(ctx)
    return redirect('/')


async def change_password(ctx, request):
    f = auth.safe_form(request)
    if f is None:
        return message(ctx, request, 'Password', 'Send the password form.', 400)
    if not await ctx.config.check_password_async(f.get('old') or ''):
        failed(fails(request), client_addr(request))
        return message(ctx, request, 'Password', 'The current password is wrong.', 400,
                       ('/config', 'Back'))
    if f.get('new') != f.get('new2'):
        return message(ctx, request, 'Password', 'The two new passwords differ.', 400,
                       ('/config', 'Back'))
    err = ctx.config.set_password(f.get('new') or '')
    if err:
        return message(ctx, request, 'Password', err['web_password_hash'], 400,
                       ('/config', 'Back'))
    ctx.config.save()
    ctx.log('web: password changed')
    request.g.set_session = auth.make_session(ctx)
    return message(ctx, request, 'Password', 'Password changed.', 200, ('/config', 'Back'))
