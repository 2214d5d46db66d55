# Small HTML helpers for the page modules: escaping, the page frame (head, navigation).
# Loaded with the pages that need it (see web/server.py).
import os
from web import auth
from web.server import chunked, static_dir, ASSETS

NAV = (('/', 'Dashboard'), ('/tinker', 'Tinker'), ('/settings', 'Settings'),
       ('/ota', 'Update'), ('/status', 'Status'))


def app_version(ctx):
    """ctx.version: an attribute or (the App's) method."""
    v = ctx.version
    return v() if callable(v) else v


def esc(s):
    s = '' if s is None else str(s)
    return s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;') \
        .replace('"', '&quot;').replace("'", '&#39;')


def asset_version():
    """A short tag that changes when the built assets change (cache busting)."""
    n = 0
    for a in ASSETS:
        try:
            st = os.stat(static_dir() + '/' + a + '.gz')
            n = (n * 31 + st[6] + int(st[8])) & 0xFFFFFF
        except OSError:
            pass
    return '%06x' % n


def head(ctx, request, title, page, charts=False):
    v = asset_version()
    yield ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width,initial-scale=1">'
           '<title>%s - %s</title><meta name="csrf" content="%s">'
           % (esc(title), esc(ctx.config['hostname']), auth.csrf_token(ctx, request)))
    if charts:
        yield '<link rel="stylesheet" href="/static/uplot.css?v=%s">' % v
    yield '<link rel="stylesheet" href="/static/app.css?v=%s">' % v
    if charts:
        yield '<script src="/static/uplot.js?v=%s" defer></script>' % v
    yield '<script src="/static/app.js?v=%s" defer></script></head>' % v
    yield '<body data-page="%s"><header><b>%s</b><nav>' % (page, esc(ctx.config['hostname']))
    on = auth.logged_in(ctx, request)
    for href, label in NAV:
        if on or href == '/':
            yield '<a href="%s"%s>%s</a>' % (href, ' class="on"' if page == href else '', label)
    if on:
        yield ('<form method="post" action="/logout" class="inline"><input type="hidden" '
               'name="csrf" value="%s"><button class="link">Log out</button></form>'
               % auth.csrf_token(ctx, request))
    else:
        yield '<a href="/login">Log in</a>'
    yield '</nav></header><main>'


def page(ctx, request, title, page_id, body, charts=False, status=200):
    """A full page response: `body` is an iterable of str."""
    auth.csrf_nonce(request)          # now, not lazily: after_request sets the cookie
    auth.logged_in(ctx, request)
    def gen():
        for p in head(ctx, request, title, page_id, charts):
            yield p
        for p in body:
            yield p
        yield '</main></body></html>'
    return chunked(gen()), status, {'Content-Type': 'text/html; charset=UTF-8',
                                    'Cache-Control': 'no-store'}


def hidden_csrf(ctx, request):
    return '<input type="hidden" name="csrf" value="%s">' % auth.csrf_token(ctx, request)


def message(ctx, request, title, text, status=200, link=None):
    body = ['<h1>%s</h1><p class="%s">%s</p>' % (esc(title), 'err' if status >= 400 else 'ok',
                                                 esc(text))]
    if link:
        body.append('<p><a href="%s">%s</a></p>' % (link[0], esc(link[1])))
    return page(ctx, request, title, '', body, status=status)
