#!/usr/bin/env python3
"""aiosmtpd as a receiving SMTP server for Petrel's interop tests.

Usage: aiosmtpd_server.py [--cert FILE --key FILE] [--port N] [--save DIR]
                          [--rcpt-reply "451 4.3.0 try later"]

Listens on 127.0.0.1 — on port N, or on a free port — (offering STARTTLS
when a certificate is given), prints `ready PORT` once it accepts
connections, and counts the messages it receives, printing
`message N tls` or `message N plaintext` as each arrives. On SIGTERM/SIGINT
or when its stdin closes it prints one line
`messages=N tls=T plaintext=P` and exits 0.

--port N      listen on port N (to start again on the port of a server
              that was stopped); retried for a while if it is still taken.
--save DIR    write each message to DIR/NNNN.eml (as received) with its
              envelope in DIR/NNNN.json ({"mail_from", "rcpt_tos", "tls"});
              the .eml file appears last, whole (renamed into place).
--rcpt-reply  answer every RCPT with this reply instead of accepting it.
"""
import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self, save_dir, rcpt_reply):
        self.lock = threading.Lock()
        self.tls = 0
        self.plaintext = 0
        self.save_dir = save_dir
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        encrypted = session.ssl is not None
        with self.lock:
            if encrypted:
                self.tls += 1
            else:
                self.plaintext += 1
            number = self.tls + self.plaintext
            if self.save_dir:
                self.save(number, envelope, encrypted)
            how = "tls" if encrypted else "plaintext"
            print(f"message {number} {how}", flush=True)
        return "250 2.0.0 OK"

    def save(self, number, envelope, encrypted):
        base = os.path.join(self.save_dir, f"{number:04d}")
        with open(base + ".json", "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "tls": encrypted,
                },
                f,
            )
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        # Renamed into place: whoever sees the .eml sees all of it.
        with open(base + ".eml.part", "wb") as f:
            f.write(content)
        os.rename(base + ".eml.part", base + ".eml")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--port", type=int)
    parser.add_argument("--save")
    parser.add_argument("--rcpt-reply")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    counter = Counter(args.save, args.rcpt_reply)
    controller = None
    # A free port may be taken meanwhile: try another. A fixed port may
    # still be held for a moment by the server that had it: try again.
    for _ in range(50 if args.port else 20):
        controller = Controller(
            counter, hostname="127.0.0.1", port=args.port or free_port(),
            tls_context=tls_context, ready_timeout=30,
        )
        try:
            controller.start()
            break
        except Exception:
            controller = None
            if args.port:
                time.sleep(0.2)
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
