"""A certificate authority made in the test (the `cryptography` package): a CA, and server
certificates it signs for host names and addresses of the test's choosing.

    ca = TestCA(tmp_path)                       # ca.pem
    cert, key = ca.server('localhost', '127.0.0.1')
    cert, key = ca.server('other.example', days=(-30, -1))     # expired
"""
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class TestCA:
    __test__ = False           # not a pytest class

    def __init__(self, directory, name='MEP Test CA', days=(-1, 365)):
        self.dir = str(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'MEP tests'),
                               x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now + datetime.timedelta(days=days[0]))
                     .not_valid_after(now + datetime.timedelta(days=days[1]))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                         self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.pem = _pem(self.cert)
        self.path = self._write('ca-%d.pem' % id(self), self.pem)

    def _write(self, name, data):
        p = os.path.join(self.dir, name)
        with open(p, 'wb') as f:
            f.write(data)
        return p

    def server(self, *names, days=(-1, 30)):
        """(certfile, keyfile) of a server certificate for `names` (DNS names or IP
        addresses, the first one also its CN), signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=days[0]))
                .not_valid_after(now + datetime.timedelta(days=days[1]))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        tag = '%s-%d' % (names[0].replace(':', '_'), len(os.listdir(self.dir)))
        return (self._write('srv-%s.pem' % tag, _pem(cert)),
                self._write('srv-%s.key' % tag, key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption())))
