# What depends on what in firmware/: no import cycle (counting the imports inside functions,
# which load a module only while it is needed), and no module using another module's private
# names (a leading underscore: `from x import _name`, `x._name`, `obj._name` for a name the
# module does not define itself).
import ast
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIRMWARE = os.path.join(ROOT, 'firmware')

# Uses of another module's private names not fixed yet, each with the reason (none).
PRIVATE_ALLOWED = {}


def modules():
    """{dotted name: path} of every module under firmware/ (a package is its __init__)."""
    out = {}
    for dirpath, _dirs, files in os.walk(FIRMWARE):
        for name in files:
            if not name.endswith('.py'):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), FIRMWARE)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            if parts:
                out['.'.join(parts)] = os.path.join(dirpath, name)
    return out


def parse(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def edges(tree, mods):
    """The firmware modules an import in `tree` loads, at any depth, each with its line."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name in mods]
        elif isinstance(node, ast.ImportFrom) and node.module in mods:
            out.append((node.module, node.lineno))
            for a in node.names:        # `from pkg import mod` loads pkg.mod
                sub = node.module + '.' + a.name
                if sub in mods:
                    out.append((sub, node.lineno))
    return out


def graph():
    mods = modules()
    return {m: edges(parse(p), mods) for m, p in mods.items()}, mods


def cycles(g):
    """Every strongly connected component of more than one module, or a module importing
    itself (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _line in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or any(w == v for w, _ in g[v]):
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycle_in_firmware():
    g, _ = graph()
    found = cycles(g)
    detail = {m: sorted({w for w, _ in g[m] if any(w in c and m in c for c in found)})
              for c in found for m in c}
    assert found == [], 'import cycles: %s (edges inside them: %s)' % (found, detail)


def test_the_cycle_check_sees_cycles_through_imports_inside_functions():
    # the check must be able to fail: a cycle made only by a lazy import is found
    src_a = 'def f():\n    from pkg import b\n'
    src_b = 'import x\nfrom pkg.a import f\n'
    mods = {'pkg': '', 'pkg.a': '', 'pkg.b': ''}
    g = {'pkg': [], 'pkg.a': edges(ast.parse(src_a), mods), 'pkg.b': edges(ast.parse(src_b), mods)}
    assert cycles(g) == [['pkg.a', 'pkg.b']]
    assert cycles({'a': [('b', 1)], 'b': []}) == []


def defined_private(tree):
    """Private names a module defines: module-level names, functions, classes and their
    attributes (methods, class attributes, self._x assignments)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            out.add(node.asname)
    return {n for n in out if n.startswith('_') and not n.endswith('__')}


def private_uses(tree, mods):
    """(line, text) of each use of a private name the module does not define itself."""
    own = defined_private(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in mods:
            for a in node.names:
                if a.name.startswith('_') and not a.name.endswith('__'):
                    out.append((node.lineno, 'from %s import %s' % (node.module, a.name)))
        elif isinstance(node, ast.Attribute):
            n = node.attr
            if n.startswith('_') and not n.endswith('__') and n not in own:
                out.append((node.lineno, '%s.%s' % (ast.unparse(node.value), n)))
    return out


def test_no_module_uses_another_modules_private_names():
    _, mods = graph()
    found = {}
    for m, path in sorted(mods.items()):
        for line, text in private_uses(parse(path), mods):
            if text not in PRIVATE_ALLOWED.get(m, ()):
                found.setdefault(m, []).append('%d: %s' % (line, text))
    assert found == {}, found


def test_the_private_name_check_can_fail():
    mods = {'a': '', 'b': ''}
    tree = ast.parse('from a import _x\nimport b\nb._y()\nclass C:\n'
                     '    def __init__(self):\n        self._z = 1\n        self._z += 1\n')
    assert [t for _l, t in private_uses(tree, mods)] == ['from a import _x', 'b._y']
