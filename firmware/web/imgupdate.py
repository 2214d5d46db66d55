# The update page's image upload (POST /api/ota with an image file, told from a bundle by its
# first bytes): streams into system.imgota.ImageReceiver in small chunks, with the same
# downgrade guard as bundles, and answers in words. Refused before anything is written when
# the board has no OTA partitions, the file is not for this chip, not signed with this
# module's key or too large for the slot; refused after it when truncated or damaged.
from web import server
from web import upload as up


async def upload(ctx, request, first, n):
    from system import imgota
    from storage.fs import Fs
    res, err, status = await up.receive(ctx, request, first, n, lambda: imgota.ImageReceiver(
        ctx.config['ota_key'], ctx.chip, Fs(ctx.data_dir or '/')))
    if err:
        ctx.log('web: image refused: %s' % err)
        return server.error(request, status, 'image refused: ' + err)
    ctx.log('web: image %s written to %s; it runs after a restart'
            % (res.get('version'), res.get('slot')))
    return {'ok': True, 'kind': 'image', 'version': res.get('version'),
            'slot': res.get('slot'), 'bytes': res.get('bytes'),
            'note': 'verified and written to %s; restart to run it. It is kept once it has '
                    'run a minute with the web UI and the meter link up; a restart before '
                    'that goes back to the running image.' % res.get('slot')}
