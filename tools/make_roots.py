"""Writes firmware/net/roots.py: the root certificates the firmware trusts for MQTT and mail
TLS besides the owner's own CA (settings mqtt_ca, smtp_ca), as DER.

    python -m tools.make_roots [--store /etc/ssl/certs]    # from Debian's ca-certificates

Which roots and why (public MQTT brokers and the certificates owners' brokers get):
- ISRG Root X1, ISRG Root X2: Let's Encrypt (RSA and ECDSA chains): HiveMQ Cloud, and most
  self-hosted brokers with a public name (Home Assistant's Mosquitto add-on with a Let's
  Encrypt certificate, a reverse proxy).
- DigiCert Global Root G2: Azure IoT Hub and Event Grid's MQTT broker.
- DigiCert Global Root CA: EMQX Cloud and many brokers on DigiCert certificates.
- Amazon Root CA 1: AWS IoT Core's endpoints.
- USERTrust RSA Certification Authority: Sectigo and ZeroSSL, the other free ACME CA.
Each is picked by its SHA-256 fingerprint, so the file changes only when this list does.
Frozen into the image the module stays in flash; as a .mpy it is imported for a connection
and dropped again.
"""
import argparse
import base64
import hashlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'firmware', 'net', 'roots.py')

# name: SHA-256 of the DER
PINS = (
    ('ISRG Root X1', '96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6'),
    ('ISRG Root X2', '69729b8e15a86efc177a57afb7171dfc64add28c2fca8cf1507e34453ccb1470'),
    ('DigiCert Global Root G2', 'cb3ccbb76031e5e0138f8dd39a23f9de47ffc35e43c1144cea27d46a5ab1cb5f'),
    ('DigiCert Global Root CA', '4348a0e9444c78cb265e058d5e8944b4d84f9662bd26db257f8934a443c70161'),
    ('Amazon Root CA 1', '8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e'),
    ('USERTrust RSA Certification Authority',
     'e793c9b02fd8aa13e21c31228accb08119643b749c898964b1746d46c3d4cbd2'),
)


def ders_of(text):
    """The DER of every certificate in PEM text."""
    out = []
    for part in text.split('-----BEGIN CERTIFICATE-----')[1:]:
        out.append(base64.b64decode(part.split('-----END CERTIFICATE-----')[0]))
    return out


def collect(store):
    found = {}
    for name in sorted(os.listdir(store)):
        p = os.path.join(store, name)
        if not name.endswith(('.pem', '.crt')) or not os.path.isfile(p):
            continue
        with open(p, errors='replace') as f:
            for der in ders_of(f.read()):
                found[hashlib.sha256(der).hexdigest()] = der
    missing = [n for n, fp in PINS if fp not in found]
    if missing:
        raise SystemExit('not in %s: %s' % (store, ', '.join(missing)))
    return [(n, found[fp]) for n, fp in PINS]


def render(certs):
    lines = ['# Root certificates trusted for MQTT and mail TLS (DER), besides the owner\'s own CA.',
             '# Written by tools/make_roots.py (which says which and why); do not edit.',
             'ROOTS = (']
    for name, der in certs:
        lines.append('    # %s (%d bytes)' % (name, len(der)))
        lines.append('    %r,' % der)
    lines.append(')')
    return '\n'.join(lines) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--store', default='/etc/ssl/certs')
    ap.add_argument('--out', default=OUT)
    a = ap.parse_args()
    certs = collect(a.store)
    with open(a.out, 'w') as f:
        f.write(render(certs))
    print('%s: %d roots, %d bytes of DER' % (a.out, len(certs), sum(len(d) for _, d in certs)))


if __name__ == '__main__':
    main()
