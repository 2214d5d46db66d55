"""A real mosquitto on a free loopback port, for the MQTT tests.

    b = Broker(); b.start(); ...; b.stop(); b.start()  # same port again; b.close()

Config: listener 127.0.0.1:PORT, anonymous access, no persistence (a restarted broker
starts empty: no retained messages, no sessions)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mosquitto_path():
    return shutil.which('mosquitto') or ('/usr/sbin/mosquitto'
                                         if os.path.exists('/usr/sbin/mosquitto') else None)


class Broker:
    def __init__(self, port=None, users=None, tls=None):
        """users: {name: password} -> password file, no anonymous access.
        tls: (certfile, keyfile) -> the listener speaks TLS."""
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix='mosq-')
        self.conf = os.path.join(self.dir, 'mosquitto.conf')
        self.log = os.path.join(self.dir, 'mosquitto.log')
        self.proc = None
        lines = ['listener %d 127.0.0.1' % self.port, 'persistence false',
                 'user root' if os.geteuid() == 0 else '',
                 'log_dest file %s' % self.log, 'log_type all']
        if users:
            pw = os.path.join(self.dir, 'passwd')
            for i, (name, password) in enumerate(users.items()):
                subprocess.run(['mosquitto_passwd', '-b'] + (['-c'] if i == 0 else []) +
                               [pw, name, password], check=True, capture_output=True)
            os.chmod(pw, 0o600)
            lines += ['allow_anonymous false', 'password_file %s' % pw]
        else:
            lines.append('allow_anonymous true')
        if tls:
            lines += ['certfile %s' % tls[0], 'keyfile %s' % tls[1]]
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def start(self, timeout=5.0):
        exe = mosquitto_path()
        if not exe:
            raise RuntimeError('mosquitto is not installed (apt-get install -y mosquitto)')
        self.proc = subprocess.Popen([exe, '-c', self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('mosquitto exited: %s' % self.read_log())
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError('mosquitto did not start on port %d' % self.port)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ''

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_cert(directory, name='localhost'):
    """A self-signed certificate + key for 127.0.0.1 / localhost -> (certfile, keyfile)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    certfile = os.path.join(directory, 'cert.pem')
    keyfile = os.path.join(directory, 'key.pem')
    with open(certfile, 'wb') as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, 'wb') as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return certfile, keyfile
