"""Real STOMP brokers for the tests: RabbitMQ's adapter if it runs, else coilmq.

``shared_broker()`` returns RabbitMQ's STOMP adapter on 127.0.0.1:61613 when
it answers a CONNECT (guest/guest, host '/'), as in CI; otherwise (or with
FASTFEDMSG_TEST_BROKER=coilmq) it starts a coilmq broker on a free port
(``CoilmqBroker``), so the tests run everywhere and never skip.  Tests that
kill, freeze or restart a broker always start a coilmq broker of their own:
the shared RabbitMQ must not be disturbed.

coilmq 1.1.0 drops a connection whose frame one of its 4096-byte reads cut in
two, which any fast publisher causes; the coilmq run here waits for whole
frames (``_wait_for_whole_frames``).  ``TlsFrontend`` puts TLS with client
certificates in front of a broker, since coilmq speaks no TLS.

Run as a script, this file is that coilmq broker:
``python tests/stomp_broker.py --port P [--auth-file F] [--strict-destinations]``.
``--strict-destinations`` makes coilmq refuse, with a real ERROR frame, any
destination that does not start with /topic/ or /queue/, as RabbitMQ refuses
unknown destination types; coilmq has no such check of its own.

``StompSubscriber`` is a stomp.py subscriber that collects what arrives and is
waited on with a deadline; with ``reconnect=True`` it reconnects and
subscribes again when its broker goes away.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import stomp

RABBITMQ_ADDRESS = ("127.0.0.1", 61613)
STRICT_PREFIXES = ("/topic/", "/queue/")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stomp_answers(host, port, user="guest", password="guest", vhost="/", timeout=2.0):
    """True if a STOMP broker at host:port accepts a CONNECT with these credentials."""
    frame = ("CONNECT\naccept-version:1.1\nhost:%s\nlogin:%s\npasscode:%s\n\n\x00"
             % (vhost, user, password)).encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(frame)
            reply = b""
            while b"\x00" not in reply:
                chunk = conn.recv(4096)
                if not chunk:
                    return False
                reply += chunk
            conn.sendall(b"DISCONNECT\n\n\x00")
            return reply.lstrip(b"\r\n").startswith(b"CONNECTED")
    except OSError:
        return False


class Broker:
    """Where a broker listens and how to log in to it."""

    kind = "external"

    def __init__(self, host, port, user="guest", password="guest", vhost="/"):
        self.host, self.port = host, port
        self.user, self.password, self.vhost = user, password, vhost

    @property
    def uri(self):
        return "%s:%d" % (self.host, self.port)

    def stop(self):
        pass


class RabbitMQBroker(Broker):
    kind = "rabbitmq"


class CoilmqBroker(Broker):
    """A coilmq process of our own on a free port; ``restart()`` keeps the port."""

    kind = "coilmq"

    def __init__(self, port=None, users=None, strict_destinations=False):
        super().__init__("127.0.0.1", port or free_port())
        self.folder = tempfile.mkdtemp(prefix="fastfedmsg-coilmq-")
        self.log_path = os.path.join(self.folder, "coilmq.log")
        self.auth_path = None
        if users:
            self.auth_path = os.path.join(self.folder, "auth.ini")
            with open(self.auth_path, "w") as handle:
                handle.write("[auth]\n")
                for user, password in users.items():
                    handle.write("%s = %s\n" % (user, password))
            self.user, self.password = next(iter(users.items()))
        self.strict_destinations = strict_destinations
        self.process = None
        self.start()

    def start(self, timeout=20.0):
        command = [sys.executable, os.path.abspath(__file__), "--port", str(self.port),
                   "--logfile", self.log_path]
        if self.auth_path:
            command += ["--auth-file", self.auth_path]
        if self.strict_destinations:
            command.append("--strict-destinations")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("coilmq exited with %s; see %s"
                                   % (self.process.returncode, self.log_path))
            if stomp_answers(self.host, self.port, self.user, self.password, timeout=0.5):
                return
            time.sleep(0.05)  # polling a starting process; the deadline bounds it
        self.stop()
        raise RuntimeError("coilmq did not answer on port %d within %.0f s"
                           % (self.port, timeout))

    def kill(self):
        """Kill the broker at once (SIGKILL): everything it held in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self):
        self.kill()
        self.start()

    def stop(self):
        """Stop the broker and remove its folder (log and auth file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def shared_broker():
    """RabbitMQ's STOMP adapter if it answers, else a new coilmq broker.

    FASTFEDMSG_TEST_BROKER=coilmq forces coilmq, to check the tests as they
    run on a machine without RabbitMQ.
    """
    forced = os.environ.get("FASTFEDMSG_TEST_BROKER", "")
    if forced != "coilmq" and stomp_answers(*RABBITMQ_ADDRESS):
        return RabbitMQBroker(*RABBITMQ_ADDRESS)
    return CoilmqBroker()


class StompSubscriber:
    """Subscribes to one destination and keeps every MESSAGE frame that arrives."""

    def __init__(self, broker, destination, reconnect=False, timeout=10.0):
        self.broker = broker
        self.destination = destination
        self.reconnect = reconnect
        self.frames = []
        self.connections = 0
        self._changed = threading.Condition()
        self._closed = False
        self._connection = None
        self._watcher = None
        self._connect(timeout)
        if reconnect:
            self._watcher = threading.Thread(target=self._keep_connected, daemon=True)
            self._watcher.start()

    def _connect(self, timeout):
        connection = stomp.Connection11([(self.broker.host, self.broker.port)],
                                        prefer_localhost=False, try_loopback_connect=False,
                                        reconnect_attempts_max=1, vhost=self.broker.vhost,
                                        auto_decode=False, timeout=timeout)
        listener = _Collector(self)
        connection.set_listener("collector", listener)
        connection.connect(self.broker.user, self.broker.password, wait=True,
                           with_connect_command=True)
        connection.subscribe(self.destination, id="1", ack="auto",
                             headers={"receipt": "subscribed"})
        listener.wait_subscribed(timeout)
        self._connection = connection
        with self._changed:
            self.connections += 1

    def _keep_connected(self):
        while not self._closed:
            connection = self._connection
            if connection is not None and connection.is_connected():
                with self._changed:
                    self._changed.wait(0.05)
                continue
            try:
                self._connect(2.0)
            except Exception:
                with self._changed:
                    self._changed.wait(0.05)

    def _arrived(self, frame):
        with self._changed:
            self.frames.append(frame)
            self._changed.notify_all()

    def bodies(self):
        with self._changed:
            return [frame.body for frame in self.frames]

    def wait_for(self, count, timeout=20.0, quiet=None):
        """Wait until ``count`` frames arrived; AssertionError after ``timeout`` s,
        or after ``quiet`` s without a new frame."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen, last_change = len(self.frames), time.monotonic()
            while len(self.frames) < count:
                now = time.monotonic()
                if now >= deadline or (quiet is not None and now - last_change > quiet):
                    raise AssertionError("%d of %d messages arrived at %s within %.1f s"
                                         % (len(self.frames), count, self.destination,
                                            timeout))
                self._changed.wait(min(0.2, deadline - now))
                if len(self.frames) != seen:
                    seen, last_change = len(self.frames), time.monotonic()
            return list(self.frames)

    def wait_quiet(self, quiet=0.5, timeout=10.0):
        """Wait until no frame arrived for ``quiet`` s; return every frame."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen, last_change = len(self.frames), time.monotonic()
            while time.monotonic() - last_change < quiet and time.monotonic() < deadline:
                self._changed.wait(0.05)
                if len(self.frames) != seen:
                    seen, last_change = len(self.frames), time.monotonic()
            return list(self.frames)

    def close(self):
        self._closed = True
        connection = self._connection
        if connection is not None:
            try:
                connection.transport.disconnect_socket()
            except Exception:
                pass
        if self._watcher is not None:
            self._watcher.join(5)


class _Collector(stomp.ConnectionListener):
    def __init__(self, owner):
        self.owner = owner
        self.subscribed = threading.Event()

    def on_receipt(self, frame):
        if frame.headers.get("receipt-id") == "subscribed":
            self.subscribed.set()

    def on_message(self, frame):
        self.owner._arrived(frame)

    def wait_subscribed(self, timeout):
        if not self.subscribed.wait(timeout):
            raise AssertionError("the broker did not confirm the subscription within %.1f s"
                                 % timeout)


# -- running coilmq ---------------------------------------------------------------

def _refuse_unknown_destinations():
    from coilmq.exception import ProtocolError
    from coilmq.protocol.adaptor import STOMP10

    accept = STOMP10.send

    def send(self, frame):
        destination = frame.headers.get("destination", "")
        if not destination.startswith(STRICT_PREFIXES):
            raise ProtocolError("unknown destination %r: this broker takes only %s"
                                % (destination, ", ".join(STRICT_PREFIXES)))
        return accept(self, frame)

    STOMP10.send = send


def _wait_for_whole_frames():
    # coilmq 1.1.0 reads 4096 bytes at a time and parses a frame whose header
    # block was cut by a read as if it were whole, then drops the connection
    # (ValueError in parse_headers, or BodyNotTerminated).  Any fast publisher
    # causes such cuts.  Parse only once the whole frame is buffered.
    from coilmq.util.frames import FrameBuffer

    parse = FrameBuffer.extract_frame

    def extract_frame(self):
        self._buffer.seek(self._pointer, 0)
        data = self._buffer.read()
        start = len(data) - len(data.lstrip(b"\r\n"))
        end = data.find(b"\n\n", start)
        crlf_end = data.find(b"\r\n\r\n", start)
        if crlf_end != -1 and (end == -1 or crlf_end < end):
            body_start = crlf_end + 4
        elif end != -1:
            body_start = end + 2
        else:
            self._buffer.seek(0, 2)
            return None
        head = data[start:body_start].lower()
        marker = head.find(b"content-length:")
        if marker != -1:
            length = int(head[marker + 15:].split(b"\n", 1)[0].strip() or 0)
            complete = len(data) > body_start + length
        else:
            complete = data.find(b"\x00", body_start) != -1
        if not complete:
            self._buffer.seek(0, 2)
            return None
        return parse(self)

    FrameBuffer.extract_frame = extract_frame


def main(argv=None):
    parser = argparse.ArgumentParser(description="coilmq for fastfedmsg's tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--logfile", required=True)
    parser.add_argument("--auth-file")
    parser.add_argument("--strict-destinations", action="store_true")
    args = parser.parse_args(argv)

    from coilmq import start

    command = ["-b", "127.0.0.1", "-p", str(args.port), "-l", args.logfile]
    if args.auth_file:
        config_path = args.logfile + ".cfg"
        with open(config_path, "w") as handle:
            handle.write("[coilmq]\nauth.factory = coilmq.auth.simple.make_simple\n"
                         "auth.simple.file = %s\n" % args.auth_file)
        command += ["-c", config_path]
    _wait_for_whole_frames()
    if args.strict_destinations:
        _refuse_unknown_destinations()
    start.main(args=command)


if __name__ == "__main__":
    main()


# -- TLS in front of a broker -------------------------------------------------------

def make_tls_files(folder):
    """Write a CA, a server certificate for 127.0.0.1 and a client certificate
    in ``folder``; return their paths as a dict."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    paths = {}

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def write(label, key, cert):
        paths[label + "_key"] = os.path.join(folder, label + ".key")
        paths[label + "_crt"] = os.path.join(folder, label + ".crt")
        with open(paths[label + "_key"], "wb") as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        with open(paths[label + "_crt"], "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))

    def certificate(subject, key, issuer, issuer_key, ca=False, extensions=()):
        builder = (x509.CertificateBuilder().subject_name(name(subject))
                   .issuer_name(name(issuer)).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    write("ca", ca_key, certificate("test CA", ca_key, "test CA", ca_key, ca=True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    write("server", server_key, certificate(
        "127.0.0.1", server_key, "test CA", ca_key, extensions=[
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])]))
    client_key = ec.generate_private_key(ec.SECP256R1())
    write("client", client_key, certificate(
        "fedmsg client", client_key, "test CA", ca_key,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]))
    return paths


class TlsFrontend:
    """Accepts TLS on a free port, requires a client certificate signed by the
    CA, and relays the bytes to a plain broker (coilmq speaks no TLS)."""

    def __init__(self, backend, tls_files):
        import ssl

        self.backend = backend
        self.host, self.port = "127.0.0.1", free_port()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls_files["server_crt"], tls_files["server_key"])
        self.context.load_verify_locations(tls_files["ca_crt"])
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.handshakes = []
        self.listener = socket.create_server((self.host, self.port))
        self.listener.settimeout(0.2)
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def uri(self):
        return "%s:%d" % (self.host, self.port)

    def _accept(self):
        while not self.closed:
            try:
                client, _address = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        import selectors
        import ssl

        try:
            client.settimeout(5)
            secure = self.context.wrap_socket(client, server_side=True)
            self.handshakes.append(secure.getpeercert()["subject"])
        except (ssl.SSLError, OSError) as exc:
            self.handshakes.append(exc)
            client.close()
            return
        backend = socket.create_connection((self.backend.host, self.backend.port), timeout=5)
        secure.setblocking(False)
        backend.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(secure, selectors.EVENT_READ, backend)
        selector.register(backend, selectors.EVENT_READ, secure)
        try:
            while not self.closed:
                for key, _mask in selector.select(0.2):
                    try:
                        data = key.fileobj.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
                # TLS may hold decrypted bytes the selector cannot see.
                while secure.pending():
                    backend.setblocking(True)
                    backend.sendall(secure.recv(secure.pending()))
                    backend.setblocking(False)
        except OSError:
            return
        finally:
            selector.close()
            secure.close()
            backend.close()

    def stop(self):
        if self.closed:
            return
        self.closed = True
        self.listener.close()
        self.thread.join(5)
