# host-only: never copied to the board. A MicroPython manifest that freezes the app into an
# image, so its bytecode runs from flash and takes no heap (README, "A MicroPython image with
# the app frozen in"):
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC_C3 FROZEN_MANIFEST=/path/to/mep/firmware/manifest.py
#
# microdot is frozen from its pinned package in the project's venv (./dev setup). Not frozen:
# boot.py and main.py (they stay files: an OTA update never replaces them, they roll a bad one
# back), web/static (served as files: tools/flash.py puts them in /lib/web/static on a board
# with this image, where no folder in the root hides the frozen web package) and PC-only
# modules.
import os

metadata(description="Open MEP firmware: reads NES/Echelon meters over the MEP port",
         version="0.1.0")

# FROZEN_MANIFEST replaces the board's own manifest: keep what the port freezes anyway, but
# umqtt.simple is the release pinned in tools/mpy_lib.py (PyPI, the one every test runs; see
# _umqtt_file below), not the one micropython-lib has when the image is built. The esp32
# port's own list (ports/esp32/boards/manifest.py) is repeated here for that, without
# umqtt.simple and umqtt.robust (which requires it; the app does not use it): two copies of
# umqtt/simple.py in one image would leave it to the order which one is imported. The unix
# port, where the image is tried on a PC, keeps its list in variants/.
ESP32_REQUIRES = ("bundle-networking", "aioespnow", "dht", "ds18x20", "neopixel", "onewire",
                  "upysh")
try:
    include("$(PORT_DIR)/variants/standard/manifest.py")
except Exception:
    freeze("$(PORT_DIR)/modules")
    include("$(MPY_DIR)/extmod/asyncio")
    for _p in ESP32_REQUIRES:
        require(_p)

_NOT_FROZEN = ("boot.py", "main.py", "manifest.py")
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

def _microdot_dir():
    """The pinned microdot package: MICRODOT_DIR, else the project's venv beside firmware/
    (MEP_VENV or .venv), else the Python running this manifest."""
    d = os.environ.get("MICRODOT_DIR")
    if d:
        return d
    venv = os.environ.get("MEP_VENV") or os.path.join("..", ".venv")
    lib = os.path.join(venv, "lib")
    for py in sorted(os.listdir(lib)) if os.path.isdir(lib) else ():
        d = os.path.join(lib, py, "site-packages", "microdot")
        if os.path.isdir(d):
            return d
    try:
        import microdot
    except ImportError:
        raise Exception("microdot not found: run ./dev setup, or set MICRODOT_DIR to the "
                        "microdot package folder of microdot==2.7.0")
    return os.path.dirname(microdot.__file__)


def _umqtt_file():
    """umqtt/simple.py of the pinned micropython-umqtt.simple (tools/mpy_lib.py): from
    MEP_MPY_LIB, else mpy-lib/ in the project's venv (MEP_VENV or .venv), where ./dev setup
    puts it; checked against the pins (version and SHA-256 of the release)."""
    d = os.environ.get("MEP_MPY_LIB")
    if not d:
        d = os.path.join(os.environ.get("MEP_VENV") or os.path.join("..", ".venv"), "mpy-lib")
    import sys
    tools = os.path.join("..", "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import mpy_lib
    if not mpy_lib.installed(d):
        raise Exception("the pinned umqtt.simple (micropython-umqtt.simple %s, tools/mpy_lib.py) "
                        "is not in %s: run ./dev setup (python -m tools.mpy_lib), or set "
                        "MEP_MPY_LIB to the folder it installed"
                        % (mpy_lib.PINS["micropython-umqtt.simple"][0], os.path.abspath(d)))
    return d


module("umqtt/simple.py", base_path=_umqtt_file())

# the release's version (release.py, VERSION = '...'), written by tools/image/build.sh
_rel = os.environ.get("MEP_RELEASE_PY")
if _rel:
    module(os.path.basename(_rel), base_path=os.path.dirname(_rel))

_md = _microdot_dir()
for _name in ("__init__.py", "microdot.py", "helpers.py", "sse.py", "csrf.py"):  # tools/flash.py
    if os.path.exists(os.path.join(_md, _name)):
        module("microdot/" + _name, base_path=os.path.dirname(_md))
