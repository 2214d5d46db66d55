# MEP meter simulator: a NES meter behind the Multipurpose Expansion Port, for tests and the
# bench. meter.py (protocol state machine, SANS-IO), tables.py (data model), faults.py,
# serve.py (CPython transports: TCP, pty, serial, in-process SimPort), __main__.py (CLI).
try:
    import mep  # noqa: F401  (the firmware's protocol core)
except ImportError:
    import sys
    _parts = __file__.replace('\\', '/').split('/')
    _root = '/'.join(_parts[:-3]) or '.'
    sys.path.append(_root + '/firmware')

from .meter import Meter  # noqa: E402
from .tables import MeterModel  # noqa: E402

__all__ = ['Meter', 'MeterModel']
