# What the update page's two uploads share (bundles: web/update.py, image files:
# web/imgupdate.py): the request body with its first chunk put back in front, the drain of
# a refused upload's rest, and the downgrade guard (an older version needs the web password,
# header X-Confirm-Password).
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


async def downgrade(ctx, request, new):
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
