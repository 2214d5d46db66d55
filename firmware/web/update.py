# Over-the-air update page: the bundle streams from the socket into ota.OtaReceiver in small
# chunks (never whole in RAM), is verified there, and is applied at the next boot. A bundle
# older than the running version (a downgrade) is refused unless the upload carries the web
# password (header X-Confirm-Password).
from web import server
from web.upload import CHUNK, Peeked, drain as _drain, downgrade as _downgrade


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
