# Dashboard and status pages and their JSON (/api/status, /api/history, /api/history.csv).
# /api/now and /api/recent, polled by the dashboard, are served by web/server.py.
from web.html import page, esc, hidden_csrf, app_version
from web import server

LEVELS = ('minute', 'hour', 'day')


def _dash_body(ctx):
    yield ('<section class="big"><div><small>Net power</small><b id="p_net">-</b> W</div>'
           '<div><small>Import</small><b id="p_in">-</b> W</div>'
           '<div><small>Export</small><b id="p_out">-</b> W</div></section>'
           '<p class="link">Link: <b id="link">-</b> <span id="lerr" class="err"></span> '
           '<small id="age"></small></p>'
           '<table class="ph"><thead><tr><th></th><th>L1</th><th>L2</th><th>L3</th></tr></thead>'
           '<tbody>')
    for key, label, unit in (('p_in', 'Import', 'W'), ('p_out', 'Export', 'W'),
                             ('u', 'Voltage', 'V'), ('i', 'Current', 'A'),
                             ('pf', 'Power factor', '')):
        yield '<tr><th>%s%s</th>' % (label, ' <small>%s</small>' % unit if unit else '')
        for ph in ('1', '2', '3'):
            yield '<td id="%s_l%s">-</td>' % (key, ph)
        yield '</tr>'
    yield ('</tbody></table><table class="kv"><tr><th>Frequency</th><td><span id="freq">-'
           '</span> Hz</td></tr><tr><th>Energy import</th><td><span id="e_in">-</span> kWh</td>'
           '</tr><tr><th>Energy export</th><td><span id="e_out">-</span> kWh</td></tr>'
           '<tr><th>Reactive import</th><td><span id="eq_in">-</span> kvarh</td></tr>'
           '<tr><th>Reactive export</th><td><span id="eq_out">-</span> kvarh</td></tr>'
           '<tr><th>Meter</th><td id="meter">-</td></tr></table>'
           '<div class="tabs" id="tabs"><button data-r="hour" class="on">1 h</button>'
           '<button data-r="day">24 h</button><button data-r="month">31 d</button>'
           '<button data-r="year">12 months</button></div>'
           '<div id="chart" class="chart"></div><p><small>Downloads: '
           '<a href="/api/history.csv?level=minute">minutes</a> '
           '<a href="/api/history.csv?level=hour">hours</a> '
           '<a href="/api/history.csv?level=day">days</a> (CSV)</small></p>')


def status_dict(ctx):
    import ota
    d = {'version': app_version(ctx), 'chip': ctx.chip, 'sys': ctx.sysinfo(),
         'link': ctx.link.status(), 'warnings': ctx.warnings(),
         'poller': {'readings': ctx.poller.readings, 'errors': ctx.poller.errors,
                    'last_error': ctx.poller.last_error, 'cycle_ms': ctx.poller.cycle_ms},
         'info': server.now_dict(ctx)['info']}
    d['link'].pop('queue', None)
    m = getattr(ctx, 'mqtt', None)
    d['mqtt'] = m.stats() if m is not None else None
    try:
        d['ota'] = ota.status(ota.Fs(ctx.data_dir or '/'))
    except Exception:
        d['ota'] = None
    return d


def _kv(d, prefix=''):
    for k in d:
        v = d[k]
        if isinstance(v, dict):
            for p in _kv(v, prefix + k + '.'):
                yield p
        else:
            yield '<tr><th>%s</th><td>%s</td></tr>' % (esc(prefix + k), esc(
                '-' if v is None else v))


def _status_body(ctx, request, d):
    yield '<h1>Status</h1>'
    w = d.pop('warnings')
    if w:
        yield '<ul class="warn">'
        for x in w:
            yield '<li>%s</li>' % esc(x)
        yield '</ul>'
    yield '<table class="kv">'
    for p in _kv(d):
        yield p
    yield ('</table><p><a href="/api/diagnostics">Download diagnostics</a> <small>(one JSON '
           'file for a bug report: versions, link counters and timing, the last 64 '
           'exchanges with the meter; no key or password)</small></p>')
    yield '<form method="post" action="/reboot" data-confirm="Reboot now?">'
    yield hidden_csrf(ctx, request) + '<button>Reboot</button></form>'


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
    return page(ctx, request, 'Dashboard', '/', _dash_body(ctx), charts=True)


async def status_page(ctx, request):
    # status_dict() imports: run it now, not while the page streams (see web/server.py)
    d = status_dict(ctx)
    return page(ctx, request, 'Status', '/status', _status_body(ctx, request, d))


async def api_status(ctx, request):
    return status_dict(ctx), 200, {'Cache-Control': 'no-store'}


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
