# host-only: never copied to the board. A MicroPython manifest that freezes the app into an
# image, so its bytecode runs from flash and takes no heap (README, "A MicroPython image with the app frozen in"):
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC_C3 PYTHON=/path/to/mep/.venv/bin/python \
#        FROZEN_MANIFEST=/path/to/mep/firmware/manifest.py
#
# PYTHON: a Python with the project's dev dependencies (microdot is frozen from its pinned
# package). Not frozen: boot.py and main.py (they stay files: an OTA update never replaces
# them, they roll a bad one back), web/static (served as files), PC-only modules.
import os

metadata(description="Open MEP firmware: reads NES/Echelon meters over the MEP port",
         version="0.1.0")

# FROZEN_MANIFEST replaces the board's own manifest: keep what the port freezes anyway
# (asyncio; on the esp32 port also umqtt.simple, which the app uses). The unix port, where
# the image is tried on a PC, keeps its list in another place.
try:
    include("$(PORT_DIR)/boards/manifest.py")
except Exception:
    include("$(PORT_DIR)/variants/standard/manifest.py")
    require("umqtt.simple")

_NOT_FROZEN = ("boot.py", "main.py", "manifest.py", "hw_host.py")
_SKIP_DIRS = ("__pycache__", "static", "src", "node_modules")

for _dir, _dirs, _files in os.walk("."):
    _dirs[:] = sorted(d for d in _dirs if d not in _SKIP_DIRS and not d.startswith("."))
    for _name in sorted(_files):
        _rel = os.path.join(_dir, _name)[2:]
        if _name.endswith(".py") and _rel not in _NOT_FROZEN:
            with open(_rel) as _f:
                if _f.readline().startswith("# host-only"):
                    continue
            module(_rel)

try:
    import microdot as _microdot
except ImportError:
    raise Exception("microdot is not installed for %s: give make PYTHON=.venv/bin/python of "
                    "this project" % os.sys.executable)
for _name in ("__init__.py", "microdot.py", "helpers.py", "sse.py", "csrf.py"):  # tools/flash.py
    _path = os.path.join(os.path.dirname(_microdot.__file__), _name)
    if os.path.exists(_path):
        module("microdot/" + _name, base_path=os.path.dirname(os.path.dirname(_path)))
