# The few filesystem operations OTA, safe mode and the supervisor need, in a small module of
# its own so the supervisor can keep it loaded without the rest of ota.py.
import os
import json


class Fs:
    """The few filesystem operations OTA and safe mode need, under `root` ('/' on the device,
    a temp dir in tests). Paths are relative, '/'-separated."""

    def __init__(self, root='/'):
        self.root = root.rstrip('/')

    def path(self, rel):
        return self.root + '/' + rel if rel else (self.root or '/')

    def _mode(self, rel):
        try:
            return os.stat(self.path(rel))[0]
        except OSError:
            return None

    def exists(self, rel):
        return self._mode(rel) is not None

    def isdir(self, rel):
        m = self._mode(rel)
        return m is not None and m & 0x4000 != 0

    def makedirs(self, rel):
        p = ''
        for part in rel.split('/'):
            p = p + '/' + part if p else part
            if part and not self.isdir(p):
                os.mkdir(self.path(p))

    def remove(self, rel):
        try:
            os.remove(self.path(rel))
        except OSError:
            pass

    def rename(self, a, b):
        if '/' in b:
            self.makedirs(b.rsplit('/', 1)[0])
        if self.exists(b):
            os.remove(self.path(b))
        os.rename(self.path(a), self.path(b))

    def rmdir_empty(self, rel):
        try:
            os.rmdir(self.path(rel))
        except OSError:             # not empty, or not there
            pass

    def rmtree(self, rel):
        if self.isdir(rel):
            for name in os.listdir(self.path(rel)):
                self.rmtree(rel + '/' + name)
            os.rmdir(self.path(rel))
        else:
            self.remove(rel)

    def open(self, rel, mode):
        return open(self.path(rel), mode)

    def read(self, rel):
        try:
            with open(self.path(rel), 'rb') as f:
                return f.read()
        except OSError:
            return None

    def write(self, rel, data):
        """Write a small file so a power cut leaves the old or the new content."""
        with open(self.path(rel + '.tmp'), 'wb') as f:
            f.write(data)
        self.rename(rel + '.tmp', rel)

    def free(self):
        try:
            s = os.statvfs(self.path(''))
            return s[0] * s[4]
        except (OSError, AttributeError):
            return None


def read_json(fs, rel):
    data = fs.read(rel)
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None
