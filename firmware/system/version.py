# Which release runs, and how two releases order (tools/version.py makes the strings).
# A release is 'MAJOR.MINOR.PATCH+N.gHASH' (N commits after the version line last changed;
# '.dirty' for a tree with uncommitted changes) or a plain 'MAJOR.MINOR.PATCH'. The build
# writes it into the top-level module release.py: on the board's filesystem (tools/flash.py),
# in every OTA bundle (tools/bundle.py) or frozen into an image.
UNKNOWN = '0.0.0+unknown'


def running():
    """The running release's version string ('0.0.0+unknown' without a release.py)."""
    try:
        from release import VERSION
    except ImportError:
        return UNKNOWN
    import sys
    sys.modules.pop('release', None)    # the string is all that is needed
    return VERSION if isinstance(VERSION, str) else UNKNOWN


def key(v):
    """(MAJOR, MINOR, PATCH, N) to compare versions, or None when `v` is no version (a bare
    commit hash such as 'a5b7acc', 'dev'): such a string orders against nothing."""
    if not isinstance(v, str):
        return None
    head, _, tail = v.partition('+')
    parts = head.split('.')
    if len(parts) != 3:
        return None
    out = []
    for p in parts:
        if not p or not p.isdigit():
            return None
        out.append(int(p))
    n = 0
    if tail:
        t = tail.split('.')[0]
        if t.isdigit():
            n = int(t)
        elif t != 'unknown':
            return None
    out.append(n)
    return tuple(out)
