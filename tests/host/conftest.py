# Host test set-up: import paths and plain `async def` tests (no pytest-asyncio).
import asyncio
import inspect
import os
import sys

import pytest

HOST = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HOST))

# firmware/ first (what the board imports), then the core test helpers, the repo root (tools.*)
# and last the CPython stand-ins for MicroPython-only modules (micropython, machine, ...).
for _p in reversed((
    os.path.join(ROOT, 'firmware'),
    os.path.join(ROOT, 'tools', 'host'),        # hw_host: the 'host' board's hardware
    os.path.join(HOST, 'core'),
    ROOT,
)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# tools/ last: its packages (mepsim) import as top-level names, as in the MicroPython runner
# (`run_core.mjs --extra tools/mepsim`). Note `mepsim` and `tools.mepsim` are then two module
# objects; a test file should use one spelling.
for _p in (os.path.join(HOST, 'shim'), os.path.join(ROOT, 'tools')):
    if _p not in sys.path:
        sys.path.append(_p)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def test_...` functions to completion with asyncio.run."""
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    asyncio.run(fn(**kwargs))
    return True
