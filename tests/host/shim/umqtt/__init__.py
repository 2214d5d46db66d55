# umqtt on CPython is micropython-lib's real package, not a stand-in: the pinned release that
# tools/mpy_lib.py installs into the environment's mpy-lib/ (./dev setup), the same
# umqtt/simple.py the MicroPython tests run. It imports MicroPython's module names
# (usocket, ustruct, ubinascii): the modules beside this folder alias them.
import os
import sys

_here = os.path.join(sys.prefix, 'mpy-lib', 'umqtt')     # tools.mpy_lib.lib_dir()
if not os.path.isfile(os.path.join(_here, 'simple.py')):
    raise ImportError('umqtt.simple is not installed in %s: run ./dev setup (python -m '
                      'tools.mpy_lib installs the pinned release)' % _here)
__path__.append(_here)
