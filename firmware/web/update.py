# Over-the-air update page: the bundle streams from the socket into ota.OtaReceiver in small
# chunks (never whole in RAM), is verified there, and is applied at the next boot. A bundle
# older than the running version (a downgrade) is refused unless the upload carries the web
# password (header X-Confirm-Password).
from web import server

CHUNK = 1024


def app_version(ctx):
    """ctx.version: an attribute or (the App's) method."""
    v = ctx.version
    return v() if callable(v) else v


class Peeked:
    """The request body with its first chunk, already read to tell an image from a bundle,
    put back in front."""

    def __init__(self, first, stream):
        self.first = first
        self.stream = stream

    async def read(self, n):
        b = self.first
        if b:
            self.first = None
            return b
        return await self.stream.read(n)


async def _drain(stream, left):
    try:
        while left > 0:
            b = await stream.read(min(CHUNK, left))
            if not b:
                break
            left -= len(b)
    except OSError:         # the client stalled or went away
        pass


def version_key(v):
    """'1.10.2' -> (1, 10, 2): numbers compared as numbers ('1.2.0-rc1' -> (1, 2, 0))."""
    out = []
    for part in str(v).split('.'):
        n = ''
        for ch in part:
            if not ch.isdigit():
                break
            n += ch
        out.append(int(n) if n else 0)
    return tuple(out)


async def _downgrade(ctx, request, new):
    """None when bundle version `new` may be installed, else the reason it may not."""
    run = app_version(ctx)
    if version_key(new) >= version_key(run):
        return None
    pw = request.headers.get('X-Confirm-Password')
    if not pw:
        return ('version %s is older than the running %s: confirm the downgrade with the web '
                'password' % (new, run))
    from web import guard
    why = await guard.password_ok(ctx, request, pw)
    if why:
        return 'downgrade to %s not confirmed: %s' % (new, why)
    ctx.log('web: downgrade from %s to %s confirmed with the password' % (run, new))
    return None


async def ota_page(ctx, request):
    """The page built at build time (web/src/ota.html): filled from /api/status."""
    from web.dash import static_page
    return static_page(request, 'ota.html')


async def ota_upload(ctx, request):
    from system import ota
    n = request.content_length
    if n <= 0:
        return server.error(request, 400, 'empty upload: choose a bundle file (the body '
                                          'must carry Content-Length)')
    first = await request.stream.read(min(CHUNK, n))
    if first[:6] == b'MEPIMG':      # an image file (system/imgota.py), not a bundle
        from web import imgupdate
        return await imgupdate.upload(ctx, request, first, n)
    rx = ota.OtaReceiver(ctx.data_dir or '/', ctx.config['ota_key'], ctx.chip,
                         ctx.config['hostname'])
    stream = Peeked(first, request.stream)
    left = n
    err = None
    checked = False
    try:
        while left > 0:
            b = await stream.read(min(CHUNK, left))
            if not b:
                break
            left -= len(b)
            rx.feed(b)
            if not checked and rx.manifest is not None:
                checked = True
                err = await _downgrade(ctx, request, rx.manifest.get('version'))
                if err:
                    rx.abort()
                    break
        if not err:
            res = rx.finish()
    except ota.OtaError as e:
        err = str(e)
    except OSError as e:
        rx.abort()
        err = 'upload failed: %s' % e
    if err:
        await _drain(stream, left)
        ctx.log('web: update refused: %s' % err)
        return server.error(request, 400, 'update refused: ' + err)
    ctx.log('web: update %s received (%d files), applied at reboot'
            % (res.get('version'), res.get('files')))
    return {'ok': True, 'version': res.get('version'), 'files': res.get('files'),
            'bytes': res.get('bytes'), 'note': 'verified; it will be applied at reboot'}


async def reboot(ctx, request):
    ctx.log('web: reboot requested')
    ctx.reboot()
    return {'ok': True, 'note': 'The module restarts now; reload the page in about 20 '
                                'seconds.'}, 200, {'Cache-Control': 'no-store'}
