# The device's web app: create_app(ctx) builds the Microdot app, serve(ctx) runs it.
#
# Access: PUBLIC paths need nothing; DASH paths need a login unless cfg['public_dashboard'];
# everything else needs a login. Until a web password is set every page leads to /setup.
# Every POST/PUT/PATCH/DELETE needs the CSRF token (web/auth.py). Bodies over MAX_BODY are
# refused with 413, except the OTA upload, which streams up to MAX_OTA.
from microdot import Microdot, Request, redirect, send_file
from web import auth
from web import html

MAX_BODY = 8192            # forms, JSON, config backups (read into RAM)
MAX_OTA = 3 * 1024 * 1024  # app bundles (streamed to flash)
STREAMED = ('/api/ota',)
PUBLIC = ('/login', '/setup', '/logout', '/getDashDataWS', '/metrics')
DASH = ('/', '/api/now', '/api/recent', '/api/history', '/api/history.csv')
CACHE_S = 31536000
STATIC_TYPES = {'js': 'application/javascript', 'css': 'text/css'}


JSON_PATHS = ('/config/restore',)


def _is_api(request):
    return request is not None and (request.path.startswith('/api/') or
                                    request.path in JSON_PATHS)


def error(request, status, text, headers=None):
    """A short error: JSON for /api/, plain text otherwise."""
    h = {'Cache-Control': 'no-store'}
    if headers:
        h.update(headers)
    if _is_api(request):
        return {'error': text}, status, h
    h['Content-Type'] = 'text/plain; charset=UTF-8'
    return text + '\n', status, h


def _access(ctx, request):
    """None, or the response for a request that may not proceed."""
    p = request.path
    if p in PUBLIC or p.startswith('/static/'):
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
    return redirect('/login?next=' + p)


def create_app(ctx):
    Request.max_content_length = MAX_OTA
    Request.max_body_length = MAX_BODY
    Request.max_readline = 2048
    app = Microdot()
    limiter = auth.Limiter()

    @app.before_request
    async def guard(request):
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
        return auth.set_cookies(request, response)

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
        if name not in html.ASSETS or ext not in STATIC_TYPES:
            return error(request, 404, 'not found')
        path = html.static_dir() + '/' + name + '.gz'
        try:
            f = open(path, 'rb')
        except OSError:
            return error(request, 404, 'asset %s not built (run ./dev build-web)' % name)
        return send_file(path, content_type=STATIC_TYPES[ext], stream=f, compressed=True,
                         max_age=CACHE_S)

    from web import login, dash, tinker, cfg, update
    login.register(app, ctx, limiter)
    dash.register(app, ctx)
    tinker.register(app, ctx)
    cfg.register(app, ctx)
    update.register(app, ctx)
    if getattr(ctx, 'require_login', None) is None:
        def require_login(request):
            return True if auth.logged_in(ctx, request) else False
        ctx.require_login = require_login
    try:
        from web import legacy_routes
    except ImportError:
        legacy_routes = None
    if legacy_routes is not None:
        legacy_routes.register(app, ctx)
    return app


async def serve(ctx, host='0.0.0.0', port=80):
    app = create_app(ctx)
    ctx.web_app = app
    await app.start_server(host=host, port=port)
