# /login, /logout, /setup (first password), /password (change it). Routes: web/server.py.
#
# Failed logins back off per client address (web/guard.py).
from microdot import redirect
from web import auth
from web.guard import fails, retry_after, failed, client_addr
from web.html import page, esc, hidden_csrf, message


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


def _next(request):
    n = request.args.get('next') or ''
    f = auth.safe_form(request)
    if f and f.get('next'):
        n = f.get('next')
    return local_path(n)


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
            '(10 to 128 characters); it protects the settings, the update page and the raw '
            'meter access.</p>']
    if msg:
        body.append('<p class="err">%s</p>' % esc(msg))
    body.append('<form method="post" action="/setup" class="box">%s'
                '<label>New password <input type="password" name="password" minlength="10" '
                'autocomplete="new-password" required></label>'
                '<label>Repeat <input type="password" name="password2" minlength="10" '
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
        st.pop(addr, None)
        request.g.set_session = auth.make_session(ctx)
        ctx.log('web: login from %s' % addr)
        return redirect(_next(request))
    failed(st, addr)
    ctx.log('web: failed login from %s' % addr)
    return _login_form(ctx, request, 'Wrong password.', 401)


async def logout(ctx, request):
    auth.end_session(ctx, request.cookies.get(auth.SESSION))
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
    err = await ctx.config.set_password_async(f.get('password'))
    if err:
        return _setup_form(ctx, request, err['web_password_hash'], 400)
    ctx.config.save()
    auth.end_all_sessions(ctx)
    ctx.log('web: password set (first run)')
    request.g.set_session = auth.make_session(ctx)
    return redirect('/')


def _answer(ctx, request, text, status=400):
    """The password form's answer: JSON for the settings page (fetch with X-CSRF-Token),
    a page for a plain form post."""
    if request.headers.get('X-CSRF-Token'):
        return ({'ok': True, 'note': text} if status == 200 else {'error': text}), status
    return message(ctx, request, 'Password', text, status, ('/settings', 'Back'))


async def change_password(ctx, request):
    f = auth.safe_form(request)
    if f is None:
        return _answer(ctx, request, 'Send the password form.')
    wait = retry_after(fails(request), client_addr(request))
    if wait:
        return _answer(ctx, request, 'Too many wrong passwords: wait %d s.' % wait, 429)
    if not await ctx.config.check_password_async(f.get('old') or ''):
        failed(fails(request), client_addr(request))
        return _answer(ctx, request, 'The current password is wrong.')
    if f.get('new') != f.get('new2'):
        return _answer(ctx, request, 'The two new passwords differ.')
    err = await ctx.config.set_password_async(f.get('new') or '')
    if err:
        return _answer(ctx, request, err['web_password_hash'])
    ctx.config.save()
    auth.end_all_sessions(ctx)        # every other browser has to log in again
    ctx.log('web: password changed (all sessions ended)')
    request.g.set_session = auth.make_session(ctx)
    return _answer(ctx, request, 'Password changed.', 200)
