# /login, /logout, /setup (first password), /password (change it).
from microdot import redirect
from web import auth
from web.html import page, esc, hidden_csrf, message


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


def _form(request):
    f = auth.safe_form(request)
    if f is None:
        return None
    return f


def register(app, ctx, limiter):
    @app.get('/login')
    async def login_page(request):
        if not auth.has_password(ctx):
            return redirect('/setup')
        return _login_form(ctx, request)

    @app.post('/login')
    async def login(request):
        if not auth.has_password(ctx):
            return redirect('/setup')
        addr = auth.client_addr(request)
        wait = limiter.retry_after(addr)
        if wait:
            r = _login_form(ctx, request, 'Too many failed logins: wait %d s.' % wait, 429)
            r[2]['Retry-After'] = str(wait)
            return r
        f = _form(request)
        if f is None or not isinstance(f.get('password'), str):
            return _login_form(ctx, request, 'Send the login form (field "password").', 400)
        if await ctx.config.check_password_async(f.get('password')):
            limiter.ok(addr)
            request.g.set_session = auth.make_session(ctx)
            ctx.log('web: login from %s' % addr)
            return redirect(_next(request))
        limiter.failed(addr)
        ctx.log('web: failed login from %s' % addr)
        return _login_form(ctx, request, 'Wrong password.', 401)

    @app.post('/logout')
    async def logout(request):
        request.g.set_session = ''
        return redirect('/login' if auth.has_password(ctx) else '/')

    @app.get('/setup')
    async def setup_page(request):
        if auth.has_password(ctx):
            return redirect('/login')
        return _setup_form(ctx, request)

    @app.post('/setup')
    async def setup(request):
        if auth.has_password(ctx):
            return message(ctx, request, 'Setup', 'A web password is already set; change it '
                           'on the Config page after logging in.', 409, ('/login', 'Log in'))
        f = _form(request)
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

    @app.post('/password')
    async def change_password(request):
        f = _form(request)
        if f is None:
            return message(ctx, request, 'Password', 'Send the password form.', 400)
        if not await ctx.config.check_password_async(f.get('old') or ''):
            addr = auth.client_addr(request)
            limiter.failed(addr)
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
