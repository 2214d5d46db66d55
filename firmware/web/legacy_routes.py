# GET /getDashDataWS (the original firmware's JSON, see legacy.py) and GET /metrics
# (Prometheus, see metrics.py). Routes: web/server.py (ROUTES).
#
# Both need a session unless cfg['legacy_public'] is on (ctx.require_login(request), set by
# web/server.create_app: True for a session or a request under the legacy key's prefix).
# ctx is the App: .config, .poller (.latest, .info), .link.status(), .mqtt (or None),
# .sysinfo().
# legacy.py and metrics.py are imported by the route that needs them (and dropped with this
# module after the request, see web/server.py).
from compat import unix_time

_CHUNK = 512


def _denied(ctx, request):
    """None when the request may proceed, else the response to return."""
    if ctx.config['legacy_public'] or ctx.require_login(request):
        return None
    return {'error': 'login required'}, 401


def sysinfo(ctx):
    s = ctx.sysinfo()
    d = {'heap_free': s['heap_free'], 'heap_alloc': s['heap_alloc'], 'uptime': s['uptime_s']}
    if ctx.mqtt is not None:
        d['mqtt'] = ctx.mqtt.stats()
    return d


def _chunks(lines):
    buf = ''
    for s in lines:
        buf += s
        if len(buf) >= _CHUNK:
            yield buf.encode()
            buf = ''
    if buf:
        yield buf.encode()


async def dash_data(ctx, request):
    denied = _denied(ctx, request)
    if denied is not None:
        return denied
    from web import legacy
    p = ctx.poller
    d = legacy.legacy_json(p.latest, p.info, unix_time())
    if d is None:
        # text, not JSON: the original integration parses any JSON body it gets and would
        # keep that error object as its data; a non-JSON answer is a failed poll it retries
        return 'no current meter reading\n', 503, {'Retry-After': '10',
                                                    'Content-Type': 'text/plain; charset=utf-8'}
    return d


async def prometheus(ctx, request):
    denied = _denied(ctx, request)
    if denied is not None:
        return denied
    from web import metrics
    p = ctx.poller
    lines = metrics.metrics_text(p.latest, p.info, ctx.link.status(), sysinfo(ctx))
    return _chunks(lines), 200, {'Content-Type': metrics.CONTENT_TYPE}
