# What the last update did, for the status page and /api/status ("update"): one small record
# (ota_status.json) that every kind of update writes (a file bundle here, an image too).
import json
import time

STATUS = 'ota_status.json'
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


def now():
    """Unix time, or None while the clock is not set (a board before NTP)."""
    t = int(time.time()) + _EPOCH
    return t if t > 1600000000 else None


def record(fs, result, version, reason=None, previous=None):
    """result: 'updated', 'on trial' or 'rolled back'; version: the update's; previous: the
    release it replaced; reason: why it was rolled back."""
    fs.write(STATUS, json.dumps({'result': result, 'version': version, 'previous': previous,
                                 'reason': reason, 'when': now()}).encode())


def status(fs):
    """{'version', 'result', 'rolled_back', 'reason', 'when', 'previous'} of the last update,
    or None when there was none."""
    data = fs.read(STATUS)
    try:
        r = json.loads(data) if data else None
    except ValueError:
        r = None
    if not isinstance(r, dict):
        return None
    res = r.get('result')
    return {'version': r.get('version'), 'result': res, 'rolled_back': res == 'rolled back',
            'reason': r.get('reason') or r.get('why'), 'when': r.get('when'),
            'previous': r.get('previous')}
