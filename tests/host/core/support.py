# Helpers for the protocol core tests. Runs unchanged on CPython (pytest) and on MicroPython
# (tests/mpy/run_core.mjs, or a board): no pytest, no typing, no f-string '=' forms.
import binascii
import json
import sys

_MICROPYTHON = sys.implementation.name == 'micropython'


def _dirname(path):
    i = path.rfind('/')
    if i < 0:
        return '.'
    return path[:i] or '/'


def _exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _data_dir():
    # The data folder sits beside the folder holding this file (tests/host/data). The wasm
    # runner keeps that layout in its filesystem; '/data' is the fixed fallback for a board.
    if _MICROPYTHON:
        here = _dirname(globals().get('__file__', '/core/support.py'))
        for d in (_dirname(here) + '/data', '/data'):
            if _exists(d):
                return d
        return '/data'
    import os.path
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data')


DATA_DIR = _data_dir()


def data_path(name):
    return DATA_DIR + '/' + name


def load_json(name):
    with open(data_path(name)) as f:
        return json.load(f)


def unhex(s):
    """Hex string -> bytes; spaces, tabs and newlines are ignored."""
    return binascii.unhexlify(''.join(s.split()))


def raises(exc_type, fn, *args, **kw):
    """Call fn(*args, **kw); return the exc_type it raised, fail if it raised nothing."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    name = getattr(exc_type, '__name__', str(exc_type))
    raise AssertionError('%s not raised by %r' % (name, fn))


def run(coro, max_steps=100000):
    """Drive a coroutine that is async only nominally (awaits nothing real) to its result.

    Each step must yield None (a bare `await asyncio.sleep(0)` style yield at most); anything
    else means it awaits real I/O or a real future, which needs an event loop: fail loudly.
    """
    steps = 0
    try:
        while True:
            got = coro.send(None)
            if got is not None:
                raise RuntimeError('coroutine awaited something real: %r' % (got,))
            steps += 1
            if steps >= max_steps:
                raise RuntimeError('coroutine did not finish in %d steps' % max_steps)
    except StopIteration as e:
        return e.args[0] if e.args else None
    finally:
        try:
            coro.close()
        except Exception:
            pass
