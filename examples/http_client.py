"""Ask a running `mipd-edge serve` for the situations in images, with the standard library only:

    mipd-edge serve BUNDLE &                                  # http://127.0.0.1:8000
    python examples/http_client.py photo.jpg                   # one image: its answer
    python examples/http_client.py a.jpg b.png --url http://127.0.0.1:8000

One image goes as the request body; several go as one multipart request and come back in
their order. A full server answers 503 with Retry-After: the client waits that long and tries
again, up to --retries times.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def request(url: str, body: bytes, content_type: str, retries: int) -> dict:
    for attempt in range(retries + 1):
        call = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(call, timeout=60) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as error:
            if error.code == 503 and attempt < retries:
                time.sleep(float(error.headers.get("Retry-After", "1")))
                continue
            detail = json.load(error).get("error", {})
            raise SystemExit(f"{error.code}: {detail.get('message', error.reason)}") from None
    raise AssertionError("unreachable")


def multipart(paths: list[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for i, path in enumerate(paths):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image{i}"; filename="{path.name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    parser.add_argument("--retries", type=int, default=3, help="tries again this many times on 503")
    parser.add_argument("--json", action="store_true", help="print the whole answers as JSON")
    args = parser.parse_args()
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        parser.exit(2, f"{parser.prog}: error: no such file: {', '.join(missing)}\n")
    try:
        if len(args.images) == 1:
            answers = [request(f"{args.url}/v1/predict", args.images[0].read_bytes(), "application/octet-stream",
                               args.retries)]
        else:
            answers = request(f"{args.url}/v1/predict", *multipart(args.images), args.retries)["results"]
    except urllib.error.URLError as error:
        parser.exit(2, f"{parser.prog}: error: cannot reach {args.url}: {error.reason}\n")
    if args.json:
        json.dump(answers, sys.stdout, indent=1)
        return
    for path, answer in zip(args.images, answers):
        if "verbs" not in answer:  # an interaction bundle's answer
            print(f"{path}: {json.dumps(answer)}")
            continue
        best = answer["verbs"][0]
        roles = ", ".join(f"{role}={value.get('noun')}" for role, value in best["roles"].items())
        print(f"{path}: {best['verb']} ({best['score']:.2f}) {roles}")


if __name__ == "__main__":
    main()
