# The signed file that OTA bundles (system/ota.py) and image files (system/imgota.py) share,
# and its streaming parser:
#   b'<MAGIC> <manifest length> <signature>\n'   signature: 64 hex digits, HMAC-SHA256 under
#                                                the device's OTA key over the manifest bytes
#   manifest: JSON, exactly <manifest length> bytes (it describes the body, with its SHA-256)
#   the body: a bundle's files or an image, streamed on.
# Part of what applies and rolls back updates (system/ota.py RECOVERY): never in a bundle.
import json
from binascii import unhexlify
from system import hmac_sha256

MAX_HEADER = 100
_HEADER, _MANIFEST, _BODY, _DONE, _FAILED = 0, 1, 2, 3, 4


class SignedError(Exception):
    """An upload refused, with the HTTP status that says why (400: the file)."""

    def __init__(self, msg, status=400):
        super().__init__(msg)
        self.status = status


def header_line(magic, manifest, key):
    """The first line of a signed file with these manifest bytes."""
    sig = hmac_sha256.hexdigest(key, manifest)
    return magic + b' ' + str(len(manifest)).encode() + b' ' + sig.encode() + b'\n'


class Receiver:
    """One signed file, fed in chunks as they arrive (feed()), then finish(). Holds in RAM
    only the header line or the manifest, and reads the manifest only once its signature
    under `key` is right. A subclass names its file (the class attributes) and takes:
      on_manifest(m, raw): the signed manifest, parsed: check it, get ready for the body and
        return the body's length;
      on_body(mv): the next bytes of the body (never past its end): take some, say how many;
      on_complete(): the whole body is in: check it, keep it, return the result;
      on_fail(): drop what the upload left behind (the first error is self.error)."""
    MAGIC = b''
    MAX_MANIFEST = 2048
    Error = SignedError
    NAME = 'file'           # unsigned <NAME> refused, malformed <NAME> header, ...
    NOT_OURS = 'not a file for this firmware (bad header)'
    MODIFIED = 'bad signature: the file was modified or signed with another key'
    TRAILING = 'unexpected data after the end: refused'
    FLASH_FAILED = 'writing to flash failed (%s)'

    def __init__(self, key):
        self._key = unhexlify(key) if isinstance(key, str) else key  # config's ota_key is hex
        self._state = _HEADER
        self._buf = bytearray()
        self._rest = 0
        self.received = 0
        self.expected = None
        self.manifest = None
        self.error = None

    def buffered(self):
        return len(self._buf)

    def feed(self, chunk):
        if self._state == _FAILED:
            raise self.Error(self.error)
        try:
            self._feed(memoryview(chunk))
        except self.Error as e:
            self._fail(str(e))
            raise
        except OSError as e:
            self._fail(self.FLASH_FAILED % (e,))
            raise self.Error(self.error, 500)

    def _feed(self, mv):
        n = len(mv)
        i = 0
        self.received += n
        while i < n:
            st = self._state
            if st == _HEADER:
                j = i
                while j < n and mv[j] != 10:
                    j += 1
                self._buf.extend(mv[i:j])
                k = min(len(self._buf), len(self.MAGIC))
                if bytes(self._buf[:k]) != self.MAGIC[:k] or len(self._buf) > MAX_HEADER:
                    raise self.Error(self.NOT_OURS)
                if j == n:
                    return
                i = j + 1
                self._header(self.received - n + i)  # the header line's length in the stream
            elif st == _MANIFEST:
                take = min(n - i, self._need - len(self._buf))
                self._buf.extend(mv[i:i + take])
                i += take
                if len(self._buf) == self._need:
                    self._manifest()
            elif st == _BODY:
                take = self.on_body(mv[i:i + self._rest])
                i += take
                self._rest -= take
                if self._rest == 0:
                    self._state = _DONE
            else:
                raise self.Error(self.TRAILING)

    def _header(self, hlen):
        parts = bytes(self._buf).decode().split(' ')
        self._buf = bytearray()
        if len(parts) < 3 or not parts[2]:
            raise self.Error('unsigned %s refused: it carries no signature' % self.NAME)
        try:
            self._need = int(parts[1])
            self._sig = unhexlify(parts[2])
        except ValueError:
            raise self.Error('malformed %s header' % self.NAME)
        if len(self._sig) != 32 or not 2 <= self._need <= self.MAX_MANIFEST:
            raise self.Error('malformed %s header' % self.NAME)
        self._hlen = hlen
        self._state = _MANIFEST

    def _manifest(self):
        raw = bytes(self._buf)
        self._buf = bytearray()
        if not hmac_sha256.equal(hmac_sha256.digest(self._key, raw), self._sig):
            raise self.Error(self.MODIFIED)
        try:
            m = json.loads(raw)
        except ValueError:
            raise self.Error('signed manifest is not valid JSON')
        size = self.on_manifest(m, raw)
        self.manifest = m
        self.expected = self._hlen + len(raw) + size
        self._rest = size
        self._state = _BODY if size else _DONE

    def finish(self):
        """Check the upload is complete, then the subclass's on_complete(): its result."""
        if self._state == _FAILED:
            raise self.Error(self.error)
        if self._state != _DONE:
            if self.expected:
                msg = 'upload truncated: got %d of %d bytes' % (self.received, self.expected)
            else:
                msg = 'upload truncated: the %s header or manifest is incomplete' % self.NAME
            self._fail(msg)
            raise self.Error(msg)
        try:
            return self.on_complete()
        except self.Error as e:
            self._fail(str(e))
            raise

    def abort(self):
        self._fail('aborted')

    def _fail(self, msg):
        self._buf = bytearray()
        self.error = self.error or msg
        self._state = _FAILED
        self.on_fail()
