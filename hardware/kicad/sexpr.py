"""Tiny S-expression reader/writer for KiCad files (used by generate.py).

Atoms are kept as their raw text: a quoted string stays quoted ('"GND"'), so writing a parsed tree
back gives the same tokens. Use q() to make a quoted atom and unq() to read one.
"""
import re

_TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+')


def parse(text):
    stack = [[]]
    for tok in _TOKEN.findall(text):
        if tok == '(':
            stack.append([])
        elif tok == ')':
            node = stack.pop()
            stack[-1].append(node)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise ValueError('unbalanced parentheses')
    return stack[0][0] if len(stack[0]) == 1 else stack[0]


def q(s):
    return '"' + str(s).replace('\\', '\\\\').replace('"', '\\"') + '"'


def unq(a):
    if isinstance(a, str) and len(a) >= 2 and a[0] == '"' and a[-1] == '"':
        return a[1:-1].replace('\\"', '"').replace('\\\\', '\\')
    return a


def num(v):
    """Format a number the way KiCad does (no trailing zeros)."""
    if isinstance(v, str):
        return v
    v = round(float(v), 6)
    if v == int(v):
        return str(int(v))
    return ('%.6f' % v).rstrip('0').rstrip('.')


def dump(node, indent=0):
    """Pretty-print: a list whose items are all atoms stays on one line."""
    if not isinstance(node, list):
        return node
    pad = '\t' * indent
    if all(not isinstance(x, list) for x in node):
        return pad + '(' + ' '.join(node) + ')'
    head = []
    rest = []
    for i, x in enumerate(node):
        if isinstance(x, list):
            rest = node[i:]
            break
        head.append(x)
    out = pad + '(' + ' '.join(head)
    for x in rest:
        if isinstance(x, list):
            out += '\n' + dump(x, indent + 1)
        else:
            out += '\n' + pad + '\t' + x
    return out + '\n' + pad + ')'


def find(node, key):
    """First child list whose head is key."""
    for x in node:
        if isinstance(x, list) and x and x[0] == key:
            return x
    return None


def findall(node, key):
    return [x for x in node if isinstance(x, list) and x and x[0] == key]
