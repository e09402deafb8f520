#!/usr/bin/env python3
"""A local stand-in for the Telegram Bot API, to try Turumba's Telegram channel without Telegram (the
README walkthrough) and to load it in benchmarks. Standard library only.

    python3 bench/peers/telegram_local.py serve --port 8081
        Answers getMe, setWebhook and sendMessage for any bot token, prints every message "sent", and
        remembers the webhook URL and secret token the channel registered.
    python3 bench/peers/telegram_local.py reply --port 8081 5550001 "Thank you"
        Makes chat 5550001 answer: the server posts a Telegram update to the registered webhook, signed
        with the registered secret token, as Telegram would.
"""

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"webhook": None, "secret": None}
LOCK = threading.Lock()
MESSAGE_IDS = itertools.count(1)
UPDATE_IDS = itertools.count(int(time.time()))
QUIET = False


def post_update(chat_id, text):
    with LOCK:
        url, secret = STATE["webhook"], STATE["secret"]
    if not url:
        return 409, {"ok": False, "description": "no webhook registered yet (set TURUMBA_PUBLIC_BASE_URL)"}
    update = {
        "update_id": next(UPDATE_IDS),
        "message": {
            "message_id": next(MESSAGE_IDS),
            "date": int(time.time()),
            "from": {"id": int(chat_id), "is_bot": False, "first_name": f"Chat {chat_id}"},
            "chat": {"id": int(chat_id), "type": "private"},
            "text": text,
        },
    }
    req = urllib.request.Request(
        url,
        data=json.dumps(update).encode(),
        headers={"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret or ""},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, {"ok": True, "webhook_status": r.status}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.do_POST()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if self.path == "/_reply":
            status, answer = post_update(body.get("chat_id"), body.get("text", ""))
            return self.answer(status, answer)
        parts = self.path.split("?")[0].split("/")
        if len(parts) < 3 or not parts[1].startswith("bot"):
            return self.answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        method = parts[2]
        if method == "getMe":
            return self.answer(200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Local", "username": "local_bot"}})
        if method == "setWebhook":
            with LOCK:
                STATE["webhook"], STATE["secret"] = body.get("url"), body.get("secret_token")
            print(f"webhook set: {body.get('url')}", flush=True)
            return self.answer(200, {"ok": True, "result": True, "description": "Webhook was set"})
        if method == "sendMessage":
            chat = body.get("chat_id")
            if not QUIET:
                print(f"→ {chat}: {body.get('text')}", flush=True)
            result = {"message_id": next(MESSAGE_IDS), "date": int(time.time()), "chat": {"id": int(chat or 0), "type": "private"}, "text": body.get("text")}
            return self.answer(200, {"ok": True, "result": result})
        return self.answer(404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})


def main():
    global QUIET
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=8081)
    s.add_argument("--quiet", action="store_true", help="do not print each message")
    r = sub.add_parser("reply")
    r.add_argument("--port", type=int, default=8081)
    r.add_argument("chat_id")
    r.add_argument("text")
    a = p.parse_args()
    if a.command == "serve":
        QUIET = a.quiet
        server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
        print(f"local Telegram Bot API on http://127.0.0.1:{a.port}", flush=True)
        server.serve_forever()
    else:
        req = urllib.request.Request(
            f"http://127.0.0.1:{a.port}/_reply",
            data=json.dumps({"chat_id": a.chat_id, "text": a.text}).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                print(resp.read().decode())
        except urllib.error.HTTPError as e:
            print(e.read().decode(), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
