# At boot, before the app (system/safemode.py): a staged bundle (system/ota.py) swapped in,
# an update on trial rolled back or kept. Each step is journalled (ota_old/.journal, and
# ota_rollback for a rollback under way): after a power cut the next boot runs it again to
# its end, so the board holds the old or the new release, never a mix it keeps.
import json
from system.ota import STAGE, OLD, COMPLETE, JOURNAL, TRIAL, ROLLBACK, RELEASE, \
    BOARD_MANIFEST, Fs, read_json
from system.update_status import record


def _version_of_release(fs):
    """The version in the board's release.py (as tools/version.py writes it), or None."""
    t = fs.read(RELEASE) or b''
    i = t.find(b'VERSION = ')
    if i < 0:
        return None
    v = t[i + 10:].split(b'\n')[0].strip()
    return v[1:-1].decode() if len(v) > 1 and v[0] in b'\'"' and v[-1] == v[0] else None


def trial(fs):
    """The update on trial: {'version', 'previous'}, or None."""
    if not fs.exists(TRIAL):
        return None
    t = read_json(fs, TRIAL)
    if isinstance(t, dict):
        return t
    return {'version': (fs.read(TRIAL) or b'').decode(), 'previous': None}


def apply_pending(fs, crashes=0, max_crashes=3, why=None):
    """At boot, before the app: finish a rollback under way or asked for (request_rollback),
    roll back an app on trial that failed `max_crashes` starts in a row (`why`: how the last
    one ended), else swap in a complete staged bundle. Returns 'rolled back', 'applied' or
    None. Each step is journalled: after a power cut the next boot runs it again to its end."""
    if isinstance(fs, str):
        fs = Fs(fs)
    if fs.exists(ROLLBACK):
        rollback(fs, (fs.read(ROLLBACK) or b'').decode() or 'asked for')
        return 'rolled back'
    if fs.exists(TRIAL) and crashes >= max_crashes:
        rollback(fs, 'it failed to start %d times in a row%s'
                 % (crashes, ' (last: %s)' % why if why else ''))
        return 'rolled back'
    if not fs.exists(COMPLETE):
        return None
    m = read_json(fs, COMPLETE)
    j = read_json(fs, JOURNAL)
    if j is None:  # a fresh apply, not one resumed after a power cut
        fs.rmtree(OLD)
        fs.makedirs(OLD)
        j = {'version': m['version'], 'previous': _version_of_release(fs), 'replaced': [],
             'added': [], 'removed': []}
        for f in m['files']:
            j['replaced' if fs.exists(f['path']) else 'added'].append(f['path'])
        for p in m.get('remove', ()):
            if fs.exists(p):
                j['removed'].append(p)
        fs.write(JOURNAL, json.dumps(j).encode())
    for p in j.get('removed', ()):
        if fs.exists(p) and not fs.exists(OLD + '/' + p):
            fs.rename(p, OLD + '/' + p)
    for p in j['replaced'] + j['added']:
        if fs.exists(STAGE + '/' + p):
            if fs.exists(p) and not fs.exists(OLD + '/' + p) and p in j['replaced']:
                fs.rename(p, OLD + '/' + p)
            fs.rename(STAGE + '/' + p, p)
    if not fs.exists(TRIAL):
        record(fs, 'on trial', j['version'], previous=j.get('previous'))
        fs.write(TRIAL, json.dumps({'version': j['version'],
                                    'previous': j.get('previous')}).encode())
    fs.remove(COMPLETE)     # first: a power cut in rmtree must not apply it again
    fs.rmtree(STAGE)
    fs.remove(BOARD_MANIFEST)
    return 'applied'


def request_rollback(fs, why):
    """Ask the next boot to roll the update on trial back (it did not prove itself)."""
    if fs.exists(TRIAL):
        fs.write(ROLLBACK, why.encode())


def rollback(fs, why):
    """Put the previous release back from OLD. Safe to run again after a power cut: ROLLBACK
    holds the reason until the end."""
    if not fs.exists(ROLLBACK):
        fs.write(ROLLBACK, why.encode())
    j = read_json(fs, JOURNAL)
    t = trial(fs)
    if j:
        for p in j['added']:
            fs.remove(p)
        # and the folders they made (an empty folder left behind is imported as an empty
        # package before the old app's module of the same name: drivers/, net/, ...)
        dirs = set()
        for p in j['added']:
            while '/' in p:
                p = p.rsplit('/', 1)[0]
                dirs.add(p)
        for d in sorted(dirs, key=lambda d: -d.count('/')):
            fs.rmdir_empty(d)
        for p in j['replaced'] + j.get('removed', []):
            if fs.exists(OLD + '/' + p):
                fs.rename(OLD + '/' + p, p)
    version = (j and j['version']) or (t and t.get('version'))
    record(fs, 'rolled back', version, why, (j and j.get('previous')) or (t and t.get('previous')))
    fs.rmtree(OLD)
    fs.remove(TRIAL)
    fs.remove(BOARD_MANIFEST)
    fs.remove(ROLLBACK)


def commit(fs):
    """The app on trial has proven itself: keep it and free ota_old/."""
    t = trial(fs)
    if t is not None:
        record(fs, 'updated', t.get('version'), previous=t.get('previous'))
        fs.remove(TRIAL)
    if fs.exists(OLD):
        fs.rmtree(OLD)
