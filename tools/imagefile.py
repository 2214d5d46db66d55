#!/usr/bin/env python3
"""Build (or check) a signed image file for the web update page of a board that runs the app
frozen into its MicroPython image (tools/flash.py image ... calls this).

  python tools/imagefile.py build-ESP32_GENERIC/micropython.bin --version V --key-file KEY -o mep.img
  python tools/imagefile.py --verify mep.img --key-file KEY

The input is the app image alone (ESP-IDF's micropython.bin, or the virtual board's image
from tools/host/esp32_board), not firmware.bin with the bootloader and partition table. The
format is described at the top of firmware/system/imgota.py: a signed manifest (device,
version, size, SHA-256) and the image. The OTA key is the device's `ota_key`, as for bundles
(tools/bundle.py): from a file or a hidden prompt, never from the command line.
"""
import argparse
import hashlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'firmware'))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

from system import hmac_sha256, imgota, signed  # noqa: E402
import bundle  # noqa: E402  (key handling)

DEVICES = {v: k for k, v in imgota.CHIP_IDS.items()}


class ImageFileError(Exception):
    pass


def image_device(image):
    """The device an app image is for, from its header's chip id."""
    if len(image) < 24 or image[0] != 0xE9:
        raise ImageFileError('not an ESP32 app image (no 0xE9 header): give the app image '
                             '(micropython.bin), not firmware.bin')
    if bytes(image[32:36]) != b'\x32\x54\xcd\xab':
        raise ImageFileError('not an app image (no app descriptor at its start): give '
                             'micropython.bin, not firmware.bin with the bootloader')
    cid = image[12] | image[13] << 8
    if cid not in DEVICES:
        raise ImageFileError('the image is for chip id 0x%04x, not ESP32 or ESP32-C3' % cid)
    return DEVICES[cid]


def manifest_bytes(image, device, version, created=None):
    m = {'format': imgota.FORMAT, 'kind': 'image', 'device': device, 'version': version,
         'size': len(image), 'sha256': hashlib.sha256(image).hexdigest(),
         'created': int(created if created is not None else time.time())}
    return json.dumps(m, separators=(',', ':'), sort_keys=True).encode()


def pack(image, key, version, device=None, created=None):
    """The signed image file's bytes."""
    device = device or image_device(image)
    raw = manifest_bytes(image, device, version, created)
    return signed.header_line(imgota.MAGIC, raw, key) + raw + bytes(image)


def write(out_path, image_path, key, version):
    with open(image_path, 'rb') as f:
        image = f.read()
    data = pack(image, key, version)
    tmp = out_path + '.part'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, out_path)
    return json.loads(data.split(b'\n', 1)[1][:int(data.split(b' ')[1])])


def verify(path, key):
    """Parse and check a signed image file as the device does (without flash): its manifest."""
    with open(path, 'rb') as f:
        data = f.read()
    head, _, rest = data.partition(b'\n')
    parts = head.split(b' ')
    if len(parts) != 3 or parts[0] != imgota.MAGIC:
        raise ImageFileError('not an image file')
    n = int(parts[1])
    raw, image = rest[:n], rest[n:]
    if not hmac_sha256.equal(hmac_sha256.digest(key, raw), bytes.fromhex(parts[2].decode())):
        raise ImageFileError('bad signature')
    m = json.loads(raw)
    if m['size'] != len(image) or hashlib.sha256(image).hexdigest() != m['sha256']:
        raise ImageFileError('the image does not match its manifest')
    if image_device(image) != m['device']:
        raise ImageFileError('the manifest and the image name different chips')
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('image', nargs='?', help='the app image (micropython.bin)')
    ap.add_argument('--version', help='version recorded (default: release.py / git)')
    ap.add_argument('--key-file', help='file holding the OTA key (hex); prompted if omitted')
    ap.add_argument('-o', '--output', help='image file to write')
    ap.add_argument('--verify', metavar='FILE', help='check a signed image file')
    a = ap.parse_args(argv)
    try:
        key = bundle.read_key(a.key_file)
        if a.verify:
            m = verify(a.verify, key)
            print('ok: %s image, version %s, %d bytes' % (m['device'], m['version'], m['size']))
            return 0
        if not a.image or not a.output or not a.version:
            ap.error('give IMAGE, --version and -o (or --verify FILE)')
        m = write(a.output, a.image, key, a.version)
        print('signed image file %s: %s, version %s, %d bytes'
              % (a.output, m['device'], m['version'], m['size']))
        return 0
    except (ImageFileError, bundle.BundleError, OSError, ValueError) as e:
        print('imagefile: error: %s' % e, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
