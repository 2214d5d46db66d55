# Tinkering: send raw MEP messages, predefined reads, the exchange log and the link state.
from binascii import hexlify, unhexlify
from mep import requests as rq
from mep import tables
from mep.jobs import PRIO_USER
from web import auth, server

MAX_HEX = 1200


def _hex(b):
    return hexlify(b).decode() if b else ''


def parse_hex(text):
    """'3f 0017 000000 0010' -> bytes; raises ValueError with a message."""
    if not isinstance(text, str):
        raise ValueError('the message must be hex text')
    s = text.strip().replace(' ', '').replace(':', '').replace('-', '').replace('\n', '') \
        .replace('\r', '').replace('\t', '')
    if s[:2] in ('0x', '0X'):
        s = s[2:]
    if not s:
        raise ValueError('empty message: type hex digits such as 30 0001 0200')
    if len(s) > MAX_HEX:
        raise ValueError('message too long (max %d hex digits)' % MAX_HEX)
    for ch in s:
        if ch not in '0123456789abcdefABCDEF':
            raise ValueError('not hex: %r is not a hex digit' % ch)
    if len(s) % 2:
        raise ValueError('odd number of hex digits (%d): every byte needs two' % len(s))
    return unhexlify(s)


def jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _hex(bytes(v))
    if isinstance(v, dict):
        d = {}
        for k in v:
            d[str(k)] = jsonable(v[k])
        return d
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def split_request(frame):
    if not frame:
        return None
    return {'bytes': len(frame), 'len': _hex(frame[:2]), 'msg': _hex(frame[2:-12]),
            'seq': _hex(frame[-12:-8]), 'digest': _hex(frame[-8:])}


def split_response(raw):
    """LEN | STATUS | COUNT | data | TRAILER for a read answer, else LEN | STATUS | rest."""
    if not raw:
        return None
    n = len(raw)
    d = {'bytes': n, 'len': _hex(raw[:2]), 'status': _hex(raw[2:3])}
    if n >= 13 and raw[2] == 0 and ((raw[3] << 8) | raw[4]) + 13 == n:
        d['count'] = _hex(raw[3:5])
        d['data'] = _hex(raw[5:-8])
        d['data_bytes'] = n - 13
        d['trailer'] = _hex(raw[-8:])
    else:
        d['rest'] = _hex(raw[3:])
    return d


def decoded(ctx, table, data):
    """{'fields': {...}} or {'dump': text} (plus 'decode_error' when decoding failed)."""
    try:
        dec = tables.decode(table, data, ctx.poller.tables)
    except (ValueError, IndexError, KeyError, TypeError) as e:
        return {'decode_error': str(e) or 'short table', 'dump': tables.hexdump(data)}
    if dec is None:
        return {'dump': tables.hexdump(data)}
    return {'fields': jsonable(dec)}


def entry_view(ctx, e, decode=True):
    req, resp = e.get('req'), e.get('resp')
    desc = e['desc']
    if not isinstance(desc, str):       # the MSG: described only when someone looks
        try:
            desc = rq.parse_message(desc).describe()
        except ValueError:
            desc = 'MSG ' + bytes(desc).hex()
    d = {'n': e['n'], 't': e['t'], 'kind': e['kind'], 'desc': desc, 'seq': e['seq'],
         'status': e['status'], 'text': e['text'], 'ms': e['ms'],
         'req': split_request(req), 'resp': split_response(resp)}
    if decode and req and resp and len(req) > 14 and e['status'] == 0:
        try:
            m = rq.parse_message(req[2:-12])
        except ValueError:
            m = None
        if m is not None and m.is_read() and len(resp) >= 13:
            d.update(decoded(ctx, m.table, resp[5:-8]))
    return d


async def tinker_page(ctx, request):
    """The page built at build time (web/src/tinker.html, its presets made by
    tools/build_web.py from mep/requests.py); the browser fills it from /api/link, /api/log."""
    from web.dash import static_page
    return static_page(request, 'tinker.html')


async def api_log(ctx, request):
    try:
        since = int(request.args.get('since', '0'))
    except ValueError:
        return server.error(request, 400, 'since must be a whole number')
    # streamed a value at a time: all 16 with their frames decoded are ~24 KB of JSON
    log = ctx.link.engine.log
    return server.chunked(_log_json(ctx, log.since(since), log.count)), 200, \
        {'Content-Type': 'application/json', 'Cache-Control': 'no-store'}


def _log_json(ctx, entries, count):
    import json
    yield '{"count": %d, "items": [' % count
    sep = ''
    for e in entries:
        yield sep
        yield from _pieces(json, entry_view(ctx, e))
        sep = ', '
    yield ']}'


def _pieces(json, d):
    # a dict as JSON a value at a time: an entry with a decoded BT28 answer is ~1.7 KB in
    # one piece, more than a fragmented 112 KB heap may have in one block; a list of dicts
    # (ET13's entries, ~1.1 KB) goes an item at a time too
    if isinstance(d, list):
        yield '['
        sep = ''
        for v in d:
            yield sep
            yield from _pieces(json, v)
            sep = ', '
        yield ']'
        return
    if not isinstance(d, dict):
        yield json.dumps(d)
        return
    yield '{'
    sep = ''
    for k in d:
        v = d[k]
        yield sep + json.dumps(k) + ': '
        yield from _pieces(json, v)
        sep = ', '
    yield '}'


async def api_link(ctx, request):
    d = jsonable(ctx.link.status())
    d['csrf'] = auth.csrf_token(ctx, request)     # for the page's POST /api/mep
    return d, 200, {'Cache-Control': 'no-store'}


async def api_mep(ctx, request):
    body = request.json if (request.content_type or '').startswith('application/json') \
        else auth.safe_form(request)
    if not isinstance(body, dict):
        return server.error(request, 400, 'send JSON {"hex": "...", "confirm": false} '
                                          'or a form with the field "hex"')
    try:
        msg = parse_hex(body.get('hex'))
        info = rq.parse_message(msg)
    except ValueError as e:
        return server.error(request, 400, str(e))
    confirm = body.get('confirm') in (True, 'on', '1', 'true', 1)
    if not info.is_read() and not confirm:
        return server.error(request, 400, 'this message writes to the meter (%s): tick '
                                          '"I know this writes" to send it' % info.describe())
    ctx.log('web: raw MEP %s' % info.describe())
    job = await ctx.link.request(msg, PRIO_USER)
    resp = job.response
    d = {'ok': job.error is None, 'error': job.error, 'desc': info.describe(),
         'table': rq.table_name(info.table), 'req': split_request(job.frame),
         'resp': split_response(resp.raw if resp else None)}
    if resp is not None and job.error is None and info.is_read():
        d.update(decoded(ctx, info.table, resp.data))
    return d, 200, {'Cache-Control': 'no-store'}
