# Password checks outside the login form and the back-off after wrong passwords.
#
# GUARDED settings open the module up or decide who may change it (keys, public switches, the
# names it answers to): changing them needs the current web password. Used by the login and
# password forms (web/login.py), the settings backup and restore (web/cfg.py), the settings API
# (web/cfgapi.py) and the update page (downgrades); none of it needs the page code.
#
# Failed passwords back off per client address: the first FREE_FAILS are free, then each
# further attempt waits twice as long as the one before (2 s, 4 s, ... up to MAX_WAIT_S) after
# the last failure. There is no limit for all clients together, so a client that has not failed
# is never kept from logging in. At most MAX_CLIENTS addresses are remembered (the one whose
# last failure is oldest is forgotten first), FORGET_S after its last failure an address starts
# afresh. The state is plain data kept on the app (request.app.login_fails) so that it outlives
# these modules, which are dropped between requests.
from compat import ticks_ms, ticks_diff

CLEARABLE = ('wifi_password', 'mbk', 'mqtt_password', 'smtp_password', 'session_secret',
             'legacy_token')
GUARDED = ('ota_key', 'session_secret', 'legacy_token', 'public_dashboard', 'legacy_public',
           'web_hosts', 'mqtt_commands')
FREE_FAILS = 3
MAX_WAIT_S = 300
FORGET_S = 900
MAX_CLIENTS = 16


def guarded_changes(ctx, changes, clear):
    """The GUARDED settings that `changes` / `clear` would change."""
    vals = ctx.config.values
    out = []
    for k in GUARDED:
        if k in clear:
            out.append(k)
        elif k in changes:
            v = changes[k]
            if k in ('ota_key', 'session_secret', 'legacy_token'):
                if v:
                    out.append(k)
            elif isinstance(vals[k], bool):       # only opening up: switching on
                if v in (True, 'on', 'true', '1') and not vals[k]:
                    out.append(k)
            elif not isinstance(v, str) or v.strip() != vals[k]:
                out.append(k)
    return out


async def password_ok(ctx, request, pw):
    """None when `pw` is the web password, else the error text (failures back off)."""
    st = fails(request)
    addr = client_addr(request)
    wait = retry_after(st, addr)
    if wait:
        return 'Too many wrong passwords: wait %d s.' % wait
    if not isinstance(pw, str) or not pw:
        return 'Enter the current web password to change these settings.'
    if not await ctx.config.check_password_async(pw):
        failed(st, addr)
        ctx.log('web: wrong password for a protected change from %s' % addr)
        return 'The current web password is wrong.'
    return None


def fails(request):
    """{address: [failures, ticks of the last one]} of this app."""
    app = request.app
    st = getattr(app, 'login_fails', None)
    if st is None:
        st = app.login_fails = {}
    return st


def _wait_s(n):
    return 0 if n < FREE_FAILS else min(MAX_WAIT_S, 2 << (n - FREE_FAILS))


def retry_after(st, addr, now=None):
    """Seconds this address has to wait, or 0 when a login attempt is allowed now."""
    e = st.get(addr)
    if e is None:
        return 0
    since = ticks_diff(ticks_ms() if now is None else now, e[1])
    if since < 0 or since >= FORGET_S * 1000:
        del st[addr]
        return 0
    left = _wait_s(e[0]) * 1000 - since
    return (left + 999) // 1000 if left > 0 else 0


def failed(st, addr, now=None):
    now = ticks_ms() if now is None else now
    if addr not in st and len(st) >= MAX_CLIENTS:
        oldest = None
        for a in st:
            if oldest is None or ticks_diff(st[oldest][1], st[a][1]) > 0:
                oldest = a
        del st[oldest]
    e = st.get(addr)
    if e is None:
        st[addr] = [1, now]
    else:
        e[0] += 1
        e[1] = now


def client_addr(request):
    """The client's IP address as text, without the port (the back-off is per client, not
    per connection). The MicroPython unix port gives a raw sockaddr (bytes)."""
    a = request.client_addr
    if isinstance(a, (tuple, list)):
        return a[0]
    if isinstance(a, (bytes, bytearray)) and len(a) >= 8:
        if a[0] == 2 and a[1] == 0:             # AF_INET: family, port, 4 address bytes
            return '%d.%d.%d.%d' % (a[4], a[5], a[6], a[7])
        if len(a) >= 24:                        # AF_INET6: family, port, flow, 16 bytes
            return ':'.join('%02x%02x' % (a[i], a[i + 1]) for i in range(8, 24, 2))
    return str(a)
