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


def main(argv=None):
    """A flash file for `tools/vboard.py --ota-flash` with the current app in ota_0, or an
    app image for it (sign it with tools/imagefile.py for the update page)."""
    import argparse
    import sys
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    sys.path.insert(0, os.path.join(root, 'tools'))
    sys.path.insert(0, root)
    import flash
    from tools.image import stamp
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument('what', choices=('flash', 'image'))
    ap.add_argument('path')
    ap.add_argument('--version', help='default: the checkout\'s version')
    a = ap.parse_args(argv)
    version = a.version or stamp.version()
    with tempfile.TemporaryDirectory() as tmp:
        m = flash.build('host', os.path.join(tmp, 'build'))
        app = os.path.join(tmp, 'app')
        for rel in m['files']:
            if rel in flash.AS_SOURCE or rel.startswith('web/static/'):
                continue
            dest = os.path.join(app, rel[len('lib/'):] if rel.startswith('lib/') else rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(os.path.join(tmp, 'build', rel), 'rb') as f, open(dest, 'wb') as g:
                g.write(f.read())
        image = make_image(app, version)
    if a.what == 'image':
        with open(a.path, 'wb') as f:
            f.write(image)
        print('%s: app image %s, %d bytes' % (a.path, version, len(image)))
        return 0
    csv = os.path.join(root, 'tools', 'image', 'partitions-mep-4MiB-ota.csv')
    with open(csv) as f:
        fl = ef.new_flash(a.path, ef.parse_csv(f.read()))
    write_slot(fl, 'ota_0', image)
    print('%s: 4 MB flash, the OTA partition table, %s in ota_0' % (a.path, version))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
