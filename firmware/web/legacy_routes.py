# GET /getDashDataWS (the original firmware's JSON, see legacy.py) and GET /metrics
# (Prometheus, see metrics.py). Routes: web/server.py (ROUTES).
#
# Both are readable without a login unless cfg['legacy_public'] is False; then they need
# a session: ctx.require_login(request) must return None/True for a valid session and
# otherwise the response to send (False -> 401). It may be a coroutine function.
#
# ctx: .config, .poller (.latest reading or None, .info dict, .status link dict or a
# method returning it; else ctx.link.status()); optional .mqtt (Mqtt, for its stats),
# .fw_info, .boot_ms.
# legacy.py and metrics.py are imported by the route that needs them (and dropped with this
# module after the request, see web/server.py).
from compat import ticks_ms, ticks_diff, unix_time, mem_free, mem_alloc
from web.server import STARTED

_CHUNK = 512


def _get(obj, name):
    v = getattr(obj, name, None)
    return v() if callable(v) else v


async def _denied(ctx, request):
    """None when the request may proceed, else the response to return."""
    try:
        public = ctx.config['legacy_public']
    except KeyError:
        public = True
    if public is None or public:
        return None
    check = getattr(ctx, 'require_login', None)
    if check is None:
        return {'error': 'login required'}, 401
    res = check(request)
    if hasattr(res, 'send') and hasattr(res, 'throw'):   # a coroutine (also on MicroPython)
        res = await res
    if res is None or res is True:
        return None
    if res is False:
        return {'error': 'login required'}, 401
    return res


def sysinfo(ctx):
    boot = getattr(ctx, 'boot_ms', None)
    d = {'heap_free': mem_free(), 'heap_alloc': mem_alloc(),
         'uptime': ticks_diff(ticks_ms(), STARTED if boot is None else boot) // 1000}
    m = getattr(ctx, 'mqtt', None)
    if m is not None:
        d['mqtt'] = m.stats()
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
    denied = await _denied(ctx, request)
    if denied is not None:
        return denied
    import legacy
    p = ctx.poller
    d = legacy.legacy_json(getattr(p, 'latest', None), getattr(p, 'info', None),
                           unix_time(), getattr(ctx, 'fw_info', None))
    if d is None:
        # text, not JSON: the original integration parses any JSON body it gets and would
        # keep that error object as its data; a non-JSON answer is a failed poll it retries
        return 'no current meter reading\n', 503, {'Retry-After': '10',
                                                    'Content-Type': 'text/plain; charset=utf-8'}
    return d


async def prometheus(ctx, request):
    denied = await _denied(ctx, request)
    if denied is not None:
        return denied
    import metrics
    p = ctx.poller
    link = _get(p, 'status')
    if link is None and getattr(ctx, 'link', None) is not None:
        link = _get(ctx.link, 'status')
    lines = metrics.metrics_text(getattr(p, 'latest', None), getattr(p, 'info', None),
                                 link, sysinfo(ctx))
    return _chunks(lines), 200, {'Content-Type': metrics.CONTENT_TYPE}
