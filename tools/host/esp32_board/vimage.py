# Images for the virtual board (host only): the frozen app as an ESP-IDF app image, as
# tools/vboard.py's bootloader loads it. An image holds the app descriptor (its version) as
# its first segment and a tar of the frozen modules, with release.py stamping the version,
# as its second; chip id 0xFFFF (no real chip) so no ESP32 ever takes one.
import io
import os
import tarfile

import esp32_flash as ef

DROM = 0x3F400020


def make_image(frozen_dir, version, extra=None):
    """The image of the app in `frozen_dir` (compiled modules), `release.py` with VERSION
    added; `extra` {path: bytes or None} adds, replaces or leaves out modules (tests' broken
    releases)."""
    buf = io.BytesIO()
    files = {'release.py': ("VERSION = '%s'\n" % version).encode()}
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT) as tar:
        for d, dirs, names in os.walk(frozen_dir):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(d, n)
                with open(p, 'rb') as f:
                    files[os.path.relpath(p, frozen_dir).replace(os.sep, '/')] = f.read()
        files.update(extra or {})
        for rel in sorted(files):
            if files[rel] is None:      # left out
                continue
            info = tarfile.TarInfo(rel)
            info.size = len(files[rel])
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[rel]))
    return ef.build_image([(DROM, ef.app_desc(version)), (DROM + 0x10000, buf.getvalue())],
                          ef.CHIP_VIRTUAL)


def extract(image, dest):
    """Unpack an image's frozen modules into `dest` (the vboard's frozen folder)."""
    segs = ef.image_segments(image)
    with tarfile.open(fileobj=io.BytesIO(bytes(segs[1][1])), mode='r') as tar:
        tar.extractall(dest, filter='data')
    return ef.image_version(image)


def write_slot(flash, label, image):
    """Write an image into a slot as esptool does (tests: the image written by cable)."""
    for p in ef.read_table(flash):
        if p['name'] == label:
            n = (len(image) + ef.SECTOR - 1) // ef.SECTOR * ef.SECTOR
            flash.erase(p['offset'], n)
            flash.write(p['offset'], image)
            return p
    raise KeyError(label)


def slot_image(flash, p):
    """The image in slot `p` as the bootloader loads it."""
    n, why = ef.verify_image(lambda o, k: flash.read(p['offset'] + o, k), p['size'])
    if not n:
        raise ValueError(why)
    return flash.read(p['offset'], n)
