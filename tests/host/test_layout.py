# The layout of firmware/ says what depends on what: the protocol core (mep/) imports only
# itself and a few MicroPython built-ins, and nothing PC-only lives under firmware/.
import ast
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIRMWARE = os.path.join(ROOT, 'firmware')
# what mep/ may import besides mep.*: no compat, asyncio, machine, socket or network
CORE_ALLOWED = {'micropython', 'struct', 'array', 'sys', 'hashlib', 'binascii'}
PACKAGES = ('mep', 'drivers', 'storage', 'net', 'system', 'web')


def imports(path):
    """Every module an import statement in `path` names (at any depth)."""
    out = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(node.module)
    return out


def test_the_protocol_core_imports_only_itself_and_builtins():
    core = os.path.join(FIRMWARE, 'mep')
    seen = {}
    for name in sorted(os.listdir(core)):
        if name.endswith('.py'):
            for mod in imports(os.path.join(core, name)):
                if mod != 'mep' and not mod.startswith('mep.') and mod not in CORE_ALLOWED:
                    seen.setdefault(name, []).append(mod)
    assert seen == {}, seen


def test_every_import_of_an_app_module_names_a_file_that_exists():
    """A module moved to another package and an import left behind would show only when the
    line runs (many imports are inside functions): every app import is checked here."""
    ours = set(PACKAGES) | {n[:-3] for n in os.listdir(FIRMWARE) if n.endswith('.py')}
    missing = []
    for dirpath, _dirs, files in os.walk(FIRMWARE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(dirpath, name)
            for mod in imports(path):
                if mod.split('.')[0] not in ours:
                    continue            # MicroPython's or a dependency's
                base = os.path.join(FIRMWARE, *mod.split('.'))
                if not (os.path.isfile(base + '.py') or os.path.isfile(
                        os.path.join(base, '__init__.py'))):
                    missing.append((os.path.relpath(path, FIRMWARE), mod))
    assert missing == [], missing
    for pkg in PACKAGES:
        assert os.path.isfile(os.path.join(FIRMWARE, pkg, '__init__.py')), pkg


def test_nothing_under_firmware_is_pc_only_but_the_manifest():
    marked = []
    for dirpath, _dirs, files in os.walk(FIRMWARE):
        for name in files:
            if name.endswith('.py'):
                with open(os.path.join(dirpath, name)) as f:
                    if f.readline().startswith('# host-only'):
                        marked.append(os.path.relpath(os.path.join(dirpath, name), FIRMWARE))
    assert marked == ['manifest.py']
    assert os.path.isfile(os.path.join(ROOT, 'tools', 'host', 'hw_host.py'))


def test_the_app_lets_the_core_drop_its_start_up_decoders(monkeypatch):
    """mep.tables has no compat: the app hands it compat.unload, so on MicroPython the
    start-up decoders leave the heap after a decode."""
    import compat
    import app  # noqa: F401  (sets mep.tables.release)
    from mep import tables
    from mep import requests as rq
    assert tables.release is compat.unload
    monkeypatch.setattr(compat, 'UNLOAD', True)     # as on MicroPython
    bt52 = bytes((26, 5, 17, 10, 30, 0, 1))         # C12.19 LTIME_DATE: 2026-05-17 10:30:00
    dec = tables.decode(rq.BT52, bt52)
    assert dec is not None and 'mep.tables_startup' not in sys.modules
    monkeypatch.setattr(tables, 'release', None)     # without the hook it stays loaded
    tables.decode(rq.BT52, bt52)
    assert 'mep.tables_startup' in sys.modules
    compat.unload('mep.tables_startup')
