#!/usr/bin/env python3
"""aiosmtpd as a receiving SMTP server for Petrel's interop tests.

Usage: aiosmtpd_server.py [--cert FILE --key FILE]

Listens on a free port of 127.0.0.1 (offering STARTTLS when a certificate is
given), prints `ready PORT` once it accepts connections, counts the messages
it receives, and on SIGTERM/SIGINT or when its stdin closes prints one line
`messages=N tls=T plaintext=P` and exits 0.
"""
import argparse
import signal
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.tls = 0
        self.plaintext = 0

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if session.ssl is not None:
                self.tls += 1
            else:
                self.plaintext += 1
        return "250 2.0.0 OK"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    counter = Counter()
    controller = None
    for _ in range(20):
        controller = Controller(
            counter, hostname="127.0.0.1", port=free_port(),
            tls_context=tls_context, ready_timeout=30,
        )
        try:
            controller.start()
            break
        except Exception:  # the free port was taken meanwhile: try another
            controller = None
    if controller is None:
        print("could not start aiosmtpd", file=sys.stderr)
        return 1

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"ready {controller.port}", flush=True)
    while not done.wait(0.2):
        pass
    controller.stop()
    with counter.lock:
        total = counter.tls + counter.plaintext
        print(f"messages={total} tls={counter.tls} plaintext={counter.plaintext}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
