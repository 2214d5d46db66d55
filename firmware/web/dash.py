# Dashboard and status pages (static, built by tools/build_web.py from web/src) and their JSON
# (/api/status, /api/history, /api/history.csv). /api/now and /api/recent, polled by the
# dashboard, are served by web/server.py.
from microdot import send_file
from web import server

LEVELS = ('minute', 'hour', 'day')


def static_page(request, name):
    """A page built at build time (tools/build_web.py, pre-gzipped): the browser fills it from
    the JSON API."""
    path = server.static_dir() + '/' + name + '.gz'
    try:
        f = open(path, 'rb')
    except OSError:
        return server.error(request, 404, 'page not built (run ./dev build-web)')
    return send_file(path, content_type='text/html; charset=UTF-8', stream=f, compressed=True,
                     max_age=0)


def _version(ctx):
    v = ctx.version
    return v() if callable(v) else v


def status_dict(ctx):
    d = {'version': _version(ctx), 'chip': ctx.chip, 'sys': ctx.sysinfo(),
         'link': ctx.link.status(), 'warnings': ctx.warnings(),
         'poller': {'readings': ctx.poller.readings, 'errors': ctx.poller.errors,
                    'last_error': ctx.poller.last_error, 'cycle_ms': ctx.poller.cycle_ms},
         'info': server.now_dict(ctx)['info']}
    d['link'].pop('queue', None)
    m = getattr(ctx, 'mqtt', None)
    d['mqtt'] = m.stats() if m is not None else None
    from system import update_status
    from storage.fs import Fs
    try:            # the image slots (None on a board without OTA partitions); first, as it
        from system import imgota       # records an image's trial or rollback
        d['image'] = imgota.status(Fs(ctx.data_dir or '/'), d['version'])
    except Exception as e:
        d['image'] = {'error': repr(e)}
    # the last update (a bundle or an image): {'version', 'result', 'rolled_back', 'reason',
    # 'when', 'previous'} or None
    try:
        d['update'] = update_status.status(Fs(ctx.data_dir or '/'))
    except Exception:
        d['update'] = None
    return d


def _level(request):
    lv = request.args.get('level', 'minute')
    return lv if lv in LEVELS else None


def _since(request):
    """?since=<unix time>: only buckets from then on (ValueError -> 400)."""
    v = request.args.get('since')
    if v is None or v == '':
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError('since must be a unix time in seconds')


async def dashboard(ctx, request):
    return static_page(request, 'dashboard.html')


async def status_page(ctx, request):
    return static_page(request, 'status.html')


async def api_status(ctx, request):
    d = status_dict(ctx)
    d['csrf'] = server.auth.csrf_token(ctx, request)   # for the update page's upload
    return d, 200, {'Cache-Control': 'no-store'}


async def api_diagnostics(ctx, request):
    """Everything a first real user can attach to a bug report, as one file: what
    /api/status shows plus the link's trace of the last exchanges (raw frames in hex;
    requests carry their digest, never the MBK)."""
    d = status_dict(ctx)
    d['board'] = ctx.config.get('board')
    d['exchanges'] = ctx.link.engine.diag.exchanges()
    d['link_ms'] = ctx.link.now()
    return d, 200, {'Cache-Control': 'no-store',
                    'Content-Disposition': 'attachment; filename="%s-diagnostics.json"'
                                           % ctx.config['hostname']}


async def api_history(ctx, request):
    lv = _level(request)
    if lv is None:
        return server.error(request, 400, 'level must be one of: ' + ', '.join(LEVELS))
    return server.chunked(ctx.store.history.to_json(lv, _since(request))), 200, {
        'Content-Type': 'application/json', 'Cache-Control': 'no-store'}


async def api_history_csv(ctx, request):
    lv = _level(request)
    if lv is None:
        return server.error(request, 400, 'level must be one of: ' + ', '.join(LEVELS))
    return server.chunked(ctx.store.history.to_csv(lv, _since(request))), 200, {
        'Content-Type': 'text/csv; charset=UTF-8', 'Cache-Control': 'no-store',
        'Content-Disposition': 'attachment; filename="%s-%s.csv"'
                               % (ctx.config['hostname'], lv)}
