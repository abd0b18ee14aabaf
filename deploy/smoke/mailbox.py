"""Wait for an email in Mailpit, or in MailDev standing in for it (scripts/compose-smoke.sh).

Asks the mail catcher's HTTP API (Mailpit's /api/v1, else MailDev's /email) until a message to
--to whose text contains --contains has arrived, then prints its subject and exits 0; exits 1
after --timeout seconds, or if more than --max such messages arrived. --count prints how many
messages to --to there are, at once.

    python3 deploy/smoke/mailbox.py --url http://127.0.0.1:8025 --to me@example.com \
        --contains "You asked" --timeout 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def messages(base: str) -> list[dict[str, str]]:
    """Every message as {"to": "a@x, b@y", "subject": …, "text": …}."""
    try:
        listing = get(f"{base}/api/v1/messages?limit=1000")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    else:  # Mailpit
        found = []
        for summary in listing.get("messages", []):
            message = get(f"{base}/api/v1/message/{summary['ID']}")
            found.append(
                {
                    "to": ", ".join(item["Address"].lower() for item in message.get("To") or []),
                    "subject": message.get("Subject", ""),
                    "text": message.get("Text", ""),
                }
            )
        return found
    return [  # MailDev
        {
            "to": ", ".join(item["address"].lower() for item in message.get("to") or []),
            "subject": message.get("subject", ""),
            "text": message.get("text", ""),
        }
        for message in get(f"{base}/email")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the mail catcher's web UI and API")
    parser.add_argument("--to", required=True)
    parser.add_argument("--contains", default="")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--max", type=int, default=1, help="most matching messages allowed")
    parser.add_argument("--count", action="store_true", help="print the count to --to, at once")
    args = parser.parse_args()
    to = args.to.lower()
    if args.count:
        print(sum(to in message["to"].split(", ") for message in messages(args.url)))
        return
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            matching = [
                message
                for message in messages(args.url)
                if to in message["to"].split(", ") and args.contains in message["text"]
            ]
        except (OSError, ValueError) as exc:
            matching = []
            print(f"mailbox: {args.url} not answering yet: {exc}", file=sys.stderr)
        if len(matching) > args.max:
            sys.exit(f"mailbox: {len(matching)} messages to {to} (at most {args.max} expected)")
        if matching:
            print(f"mailbox: to {to}: {matching[0]['subject']!r}")
            return
        if time.monotonic() > deadline:
            sys.exit(
                f"mailbox: no message to {to} containing {args.contains!r} after "
                f"{args.timeout:.0f} s"
            )
        time.sleep(1)


if __name__ == "__main__":
    main()
