# What the update page's two uploads share (bundles: web/update.py, image files:
# web/imgupdate.py): the request body streamed into the receiver of a signed file
# (system/signed.py) with its first chunk put back in front, the drain of a refused upload's
# rest, and the downgrade guard (an older version, or one that does not order, needs the web
# password, header X-Confirm-Password).
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


async def drain(stream, left):
    try:
        while left > 0:
            b = await stream.read(min(CHUNK, left))
            if not b:
                break
            left -= len(b)
    except OSError:         # the client stalled or went away
        pass


async def receive(ctx, request, first, n, make):
    """Streams the upload (`n` bytes, its first chunk `first` already read) into the receiver
    make() builds (a system.signed.Receiver), with the downgrade guard once its manifest is
    in. (its result, None, 200), or (None, why it was refused, HTTP status) once the rest of
    the upload is drained."""
    from system.signed import SignedError
    stream = Peeked(first, request.stream)
    left = n
    err = None
    code = 400
    rx = None
    try:
        rx = make()
        checked = False
        while left > 0:
            b = await stream.read(min(CHUNK, left))
            if not b:
                break
            left -= len(b)
            rx.feed(b)
            if not checked and rx.manifest is not None:
                checked = True
                err = await downgrade(ctx, request, rx.manifest.get('version'))
                if err:
                    rx.abort()
                    break
        if not err:
            return rx.finish(), None, 200
    except SignedError as e:
        err = str(e)
        code = e.status
    except OSError as e:
        if rx is not None:
            rx.abort()
        err = 'upload failed: %s' % e
    await drain(stream, left)
    return None, err, code


async def downgrade(ctx, request, new):
    """None when version `new` (a bundle's or an image's) may be installed, else the reason
    it may not: older than the running release, or no version that orders (system/version.py:
    a bare commit hash such as 'a5b7acc' is none), unless confirmed with the web password."""
    from system.version import key
    run = app_version(ctx)
    k_new, k_run = key(new), key(run)
    if k_new is not None and (k_run is None or k_new >= k_run):
        return None
    if k_new is None:
        what = ('version %r does not say whether it is newer than the running %s (a version is '
                'MAJOR.MINOR.PATCH+N.gHASH)' % (new, run))
    else:
        what = 'version %s is older than the running %s' % (new, run)
    pw = request.headers.get('X-Confirm-Password')
    if not pw:
        return what + ': confirm the downgrade with the web password'
    from web import guard
    why = await guard.password_ok(ctx, request, pw)
    if why:
        return 'downgrade to %s not confirmed: %s' % (new, why)
    ctx.log('web: downgrade from %s to %s confirmed with the password' % (run, new))
    return None
