# Settings backup and restore (the settings themselves: the static page /settings over the JSON
# API of web/cfgapi.py; the old address /config leads there). Restoring a backup that changes a
# GUARDED setting (web/guard.py) and downloading a backup with the secrets need the current web
# password.
import json
from microdot import redirect
from web import auth, server
from web.guard import GUARDED, password_ok


def _backup(ctx, secrets):
    name = '%s-settings%s.json' % (ctx.config['hostname'], '-SECRETS' if secrets else '')
    return json.dumps(ctx.config.export(secrets)), 200, {
        'Content-Type': 'application/json', 'Cache-Control': 'no-store',
        'Content-Disposition': 'attachment; filename="%s"' % name}


async def config_page(ctx, request):
    """The old settings address (bookmarks, links in older pages)."""
    return redirect('/settings')


async def backup(ctx, request):
    return _backup(ctx, False)


async def backup_secrets(ctx, request):
    form = auth.safe_form(request)
    secrets = bool(form and form.get('secrets'))
    if secrets:
        why = await password_ok(ctx, request, form.get('password'))
        if why:
            return server.error(request, 403, why + ' The backup with secrets needs it.')
        ctx.log('web: settings backup with secrets downloaded')
    return _backup(ctx, secrets)


async def restore(ctx, request):
    try:
        d = json.loads(request.body.decode())
    except ValueError:
        return server.error(request, 400, 'the backup is not valid JSON')
    if not isinstance(d, dict):
        return server.error(request, 400, 'the backup must be a JSON object')
    guarded = [k for k in GUARDED if k in d and d[k] != ctx.config.values[k]]
    if guarded:
        why = await password_ok(ctx, request, request.headers.get('X-Confirm-Password'))
        if why:
            return {'error': why, 'password_needed': guarded}, 403
    errors = ctx.config.restore(d)
    if errors:
        return {'error': 'nothing restored', 'fields': errors}, 400
    ctx.config.save()
    ctx.log('web: settings restored from a backup' + (
        ' (protected settings changed with the password: %s)' % ', '.join(guarded)
        if guarded else ''))
    return {'ok': True, 'note': 'restored; reboot to apply every setting'}
