# Atomic file replacement for config.py (and history_load.py reads the old history file).
#
# Scheme (write-tmp / sync / rename):
#   1. write the new content to <path>.tmp, flush, fsync where available, close, os.sync()
#   2. remove an old <path>.bak, rename <path> -> <path>.bak (the previous copy is kept)
#   3. rename <path>.tmp -> <path>, os.sync()
# A power cut at any step leaves either <path> (old or new), or - only between the two renames
# of step 2/3 - no <path> but a complete <path>.tmp (new) and <path>.bak (old).
# read() tries <path>, then <path>.tmp only if <path> is missing, then <path>.bak, so every
# interruption loads as old-or-new. Renaming over an existing file fails on some filesystems,
# hence the explicit remove. All os calls go through this module's `os` name so tests can
# interrupt them one by one.
import os

TMP = '.tmp'
BAK = '.bak'


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _sync():
    if hasattr(os, 'sync'):
        os.sync()


def begin(path):
    """Open <path>.tmp for writing (binary). Write into it, then call commit(path, f)."""
    return open(path + TMP, 'wb')


def commit(path, f):
    """Make the content written to `f` (from begin(path)) the new <path>, atomically."""
    try:
        f.flush()
        if hasattr(os, 'fsync'):
            os.fsync(f.fileno())
    finally:
        f.close()
    _sync()
    if exists(path):
        _remove(path + BAK)
        os.rename(path, path + BAK)
    os.rename(path + TMP, path)
    _sync()


def abort(f):
    try:
        f.close()
    except OSError:
        pass


def write(path, data):
    """Atomically replace `path` with `data` (bytes or str), or with what `data(f)` writes
    when `data` is callable (stream large content in chunks)."""
    f = begin(path)
    try:
        if callable(data):
            data(f)
        else:
            if isinstance(data, str):
                data = data.encode()
            f.write(data)
    except BaseException:
        abort(f)
        raise
    commit(path, f)


def read(path, parse):
    """Load `path` with parse(file) -> value, with recovery. Returns (value, source) where
    source is 'main', 'tmp' (main missing, complete tmp), 'bak' or None (nothing loadable;
    value is then None). `parse` raises (ValueError, OSError, ...) on a bad file."""
    main = exists(path)
    cands = ((path, 'main'),) if main else ((path + TMP, 'tmp'),)
    for p, src in cands + ((path + BAK, 'bak'),):
        try:
            with open(p, 'rb') as f:
                return parse(f), src
        except Exception:  # noqa: any unreadable or unparsable candidate: try the next
            pass
    return None, None
