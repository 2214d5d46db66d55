# Over-the-air update page: the bundle streams from the socket into ota.OtaReceiver in small
# chunks (never whole in RAM), is verified there, and is applied at the next boot. A bundle
# older than the running release (a downgrade), or whose version does not order (a bare
# commit hash), is refused unless the upload carries the web password (header
# X-Confirm-Password; web/upload.py). A board with the app frozen into its image refuses
# bundles (409): it is updated by image.
from web import server
from web import upload as up

# Heap the app needs as .mpy files (README, Memory): 272 KB on a 32-bit port (the ESP32's),
# 384 KB on a 64-bit one (a virtual board). A bundle carries the app so.
APP_HEAP_MPY = 272 * 1024
APP_HEAP_MPY_64 = 384 * 1024


def frozen_app():
    """True when the running app is frozen into the MicroPython image: its module is no file
    on the board (a frozen module's __file__ is its source name, 'app.py')."""
    import sys
    import os
    f = getattr(sys.modules.get('app'), '__file__', None)
    if not f:
        return False
    try:
        os.stat(f)
        return False
    except OSError:
        return True


def bundle_refused(heap=None):
    """Why this board takes no bundle, or None. On a board with the app frozen into its
    image a bundle's .mpy files land in the board's root and are imported instead of the
    frozen app: with the heap cost of .mpy files, which an ESP32's 112-128 KB do not hold;
    and its system/ and storage/ folders would hide the image's packages, with the code that
    applies and rolls back updates in them (which no bundle carries), so the board could no
    longer start. Refused: such a board is updated with a new image."""
    if not frozen_app():
        return None
    import gc
    import sys
    if heap is None:
        try:
            heap = gc.mem_free() + gc.mem_alloc()
        except AttributeError:      # CPython: no MicroPython heap to fill
            heap = None
    need = APP_HEAP_MPY if sys.maxsize < 1 << 32 else APP_HEAP_MPY_64
    todo = ('Update this board with the signed image file of the new release (tools/flash.py '
            'image) on this page, or by cable if its image has no OTA partitions (README, "A '
            'MicroPython image with the app frozen in"); not with a bundle')
    if heap is not None and heap < need:
        return ('this board runs the app frozen into its MicroPython image and has %d KB of '
                'heap; a bundle brings the app as .mpy files, which would be imported instead '
                'of the frozen app and need about %d KB. %s' % (heap // 1024, need // 1024,
                                                               todo))
    return ('this board runs the app frozen into its MicroPython image; a bundle\'s system/ '
            'and storage/ folders would hide the image\'s, and with them the code that applies '
            'and rolls back updates, which no bundle carries (it has %s KB of heap, enough '
            'for the app as .mpy files). %s' % ('?' if heap is None else heap // 1024, todo))


async def ota_page(ctx, request):
    """The page built at build time (web/src/ota.html): filled from /api/status."""
    from web.dash import static_page
    return static_page(request, 'ota.html')


async def ota_upload(ctx, request):
    n = request.content_length
    if n <= 0:
        return server.error(request, 400, 'empty upload: choose a bundle file (the body '
                                          'must carry Content-Length)')
    first = await request.stream.read(min(up.CHUNK, n))
    if first[:6] == b'MEPIMG':      # an image file (system/imgota.py), not a bundle
        from web import imgupdate
        return await imgupdate.upload(ctx, request, first, n)
    why = bundle_refused()
    if why:
        await up.drain(request.stream, n - len(first))
        ctx.log('web: update refused: %s' % why)
        return server.error(request, 409, 'update refused: ' + why)
    from system import ota
    res, err, _status = await up.receive(ctx, request, first, n, lambda: ota.OtaReceiver(
        ctx.data_dir or '/', ctx.config['ota_key'], ctx.chip, ctx.config['hostname']))
    if err:
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
