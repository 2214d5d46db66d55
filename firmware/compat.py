# The few things that differ between MicroPython and CPython, probed once.
# Firmware modules import these names from here instead of probing again.
import time

try:
    import asyncio
except ImportError:  # very old MicroPython
    import uasyncio as asyncio

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
except AttributeError:  # CPython
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

if hasattr(asyncio, 'sleep_ms'):
    sleep_ms = asyncio.sleep_ms
else:
    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

import gc

if hasattr(gc, 'mem_free'):
    mem_free = gc.mem_free
    mem_alloc = gc.mem_alloc
else:  # CPython: no heap figures
    def mem_free():
        return None

    def mem_alloc():
        return None


# Seconds to add to time.time() for UTC unix time (MicroPython ports use 1970 too since
# 1.22, but older ESP32 builds count from 2000); the port's epoch never changes.
_EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


def epoch_offset():
    return _EPOCH


def unix_time():
    return int(time.time()) + _EPOCH

import sys

# On MicroPython the bytecode of every imported module lives in the heap. Code that is only
# needed now and then (a web page, Home Assistant discovery, sending a mail) is imported when
# needed and dropped again with unload(); tests on CPython may set UNLOAD to exercise it.
MICROPYTHON = sys.implementation.name == 'micropython'
UNLOAD = MICROPYTHON


def unload(*names):
    """Forget the modules `names` (and their attributes on the parent package); on MicroPython
    also collect at once, so their bytecode is freed before anything else is loaded (left to a
    later automatic collection, stale pointers on the C stack, which the GC scans
    conservatively, can keep an old copy alive next to a new one). Does nothing unless UNLOAD.
    Callers keep no references to their contents."""
    if not UNLOAD:
        return
    mods = sys.modules
    for name in names:
        if name in mods:
            del mods[name]
        i = name.rfind('.')
        if i > 0:
            parent = mods.get(name[:i])
            if parent is not None and hasattr(parent, name[i + 1:]):
                try:
                    delattr(parent, name[i + 1:])
                except (AttributeError, TypeError):
                    pass
    if MICROPYTHON:
        gc.collect()
