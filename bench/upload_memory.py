"""Document upload memory: how much the server's memory grows while it takes a 50 MB PDF.

The embedded server of `make run` (`flask serve`, without the worker) runs as a child process on a
fresh SQLite database with the demo data. The demo patient signs in through the real login form
and uploads a 50,000,000-byte PDF through the chunked upload protocol the browser uses
(1 MiB chunks, then "complete", which checks the PDF, encrypts it and stores it).

Memory is the server process's peak resident set (VmHWM in /proc/<pid>/status). After a warm-up
upload (so imports, the thread pool and the database connection are in place), the peak is reset
to the current resident set (`echo 5 > /proc/<pid>/clear_refs`); the figure is the peak after
the 50 MB upload minus that baseline. Target: under 30 MB: the server streams every chunk to
disk and never holds the file in memory.

    .venv/bin/python -m bench.upload_memory           # three uploads, the worst one counts
    .venv/bin/python -m bench.upload_memory --quick   # one upload
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import LOCALHOST, USER_AGENT, Row, ServerProcess, free_port
from bench.serving import SESSION_COOKIE, demo_environment, prepare_database, sign_in

FILE_BYTES = 50_000_000
CHUNK_BYTES = 1024 * 1024
TARGET_MB = 30.0
MB = 1024 * 1024  # memory is reported in MiB, as the kernel counts it


# A valid 50 MB PDF, written to disk in pieces -----------------------------------------------------

def write_pdf(path: Path, size: int) -> None:
    """One page, and one large embedded stream of random bytes that pads the file to exactly `size`.

    Random bytes do not compress, like the scanned pages that make real PDFs this large.
    """
    header = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
    ]
    content = b"BT /F1 12 Tf 72 770 Td (Benchmark scan) Tj ET"
    objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")

    def tail_size(padding_offset: int, padding_length: int) -> int:
        xref_at = padding_offset + len(padding_head(padding_length)) + padding_length + len(b"\nendstream\nendobj\n")
        return len(xref(6, [0] * 6)) + len(trailer(xref_at))

    def padding_head(length: int) -> bytes:
        return b"5 0 obj\n<< /Length %d >>\nstream\n" % length

    def xref(count: int, offsets: list[int]) -> bytes:
        lines = [b"xref\n0 %d\n0000000000 65535 f \n" % count]
        lines += [b"%010d 00000 n \n" % offset for offset in offsets[1:]]
        return b"".join(lines)

    def trailer(xref_at: int) -> bytes:
        return b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref_at

    with open(path, "wb") as out:
        out.write(header)
        offsets = [0]
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        padding_offset = out.tell()
        # The padding length decides the width of the numbers after it: settle it in two passes.
        length = size - padding_offset - len(padding_head(0)) - len(b"\nendstream\nendobj\n") - tail_size(
            padding_offset, 0)
        length = size - padding_offset - len(padding_head(length)) - len(b"\nendstream\nendobj\n") - tail_size(
            padding_offset, length)
        offsets.append(padding_offset)
        out.write(padding_head(length))
        remaining = length
        while remaining:
            piece = os.urandom(min(remaining, CHUNK_BYTES))
            out.write(piece)
            remaining -= len(piece)
        out.write(b"\nendstream\nendobj\n")
        xref_at = out.tell()
        out.write(xref(6, offsets) + trailer(xref_at))
    if path.stat().st_size != size:
        raise RuntimeError(f"the benchmark PDF is {path.stat().st_size} bytes, not {size}")


# The server's memory -------------------------------------------------------------------------------

def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def reset_peak(pid: int) -> None:
    """Set the process's peak resident set (VmHWM) back to its current one (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# The upload, as uploads.js does it ----------------------------------------------------------------

class Uploader:
    def __init__(self, base_url: str, cookie: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        self.http.cookies.set(SESSION_COOKIE, cookie, domain=LOCALHOST)
        page = self.http.get(f"{base_url}/documents", timeout=30)
        page.raise_for_status()
        match = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
        if match is None:
            raise RuntimeError("no CSRF token on the documents page (not signed in?)")
        self.http.headers.update({"X-CSRFToken": match.group(1), "Accept": "application/json"})

    def upload(self, path: Path, filename: str) -> dict:
        size = path.stat().st_size
        created = self.http.post(f"{self.base_url}/documents/uploads", timeout=30,
                                 data={"kind": "medical_summary", "filename": filename, "size": size})
        if created.status_code != 201:
            raise RuntimeError(f"starting the upload answered {created.status_code}: {created.text[:300]}")
        state = created.json()
        with open(path, "rb") as source:
            offset = 0
            while offset < size:
                piece = source.read(state["chunk_bytes"])
                answer = self.http.post(f"{self.base_url}{state['chunk_url']}", data=piece, timeout=120, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {offset}-{offset + len(piece) - 1}/{size}"})
                if answer.status_code != 200:
                    raise RuntimeError(f"chunk at {offset} answered {answer.status_code}: {answer.text[:300]}")
                offset = answer.json()["offset"]
        done = self.http.post(f"{self.base_url}{state['complete_url']}", timeout=600)
        if done.status_code != 201:
            raise RuntimeError(f"completing the upload answered {done.status_code}: {done.text[:300]}")
        return done.json()["document"]


@dataclass
class UploadReport:
    """What `python -m bench` prints and saves (see bench/__main__.py's Report)."""

    results: list[dict]

    def rows(self) -> list[Row]:
        return [Row("documents", result["benchmark"].removeprefix("document upload: "), "embedded uvicorn+a2wsgi",
                    result["value"], result["unit"], note=result.get("target", "") and f"target {result['target']}")
                for result in self.results]

    def to_json(self) -> dict:
        return {"results": self.results}


def run(*, quick: bool = False, log: Callable[[str], None] = print) -> UploadReport:
    """Memory growth per 50 MB upload, and the upload's time."""
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="verity-bench-upload-") as tmp:
        folder = Path(tmp)
        env = demo_environment(folder)
        log("upload memory: migrating a fresh SQLite database and loading the demo data")
        prepare_database(env)
        big, small = folder / "scan-50mb.pdf", folder / "warm-up.pdf"
        write_pdf(big, FILE_BYTES)
        write_pdf(small, 2 * CHUNK_BYTES + 12345)
        port = free_port()
        base_url = f"http://{LOCALHOST}:{port}"
        argv = [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--host", LOCALHOST, "--port", str(port),
                "--no-worker"]
        with ServerProcess("embedded server", argv, env, folder / "server.log") as server:
            server.wait_healthy(base_url)
            pid = server._proc.pid  # the server itself: `flask serve` runs uvicorn in this process
            uploader = Uploader(base_url, sign_in(base_url))
            uploader.upload(small, "warm-up.pdf")
            growths, seconds = [], []
            for number in range(1, rounds + 1):
                reset_peak(pid)
                baseline = _status_kib(pid, "VmHWM")
                started = time.monotonic()
                document = uploader.upload(big, f"scan-{number}.pdf")
                seconds.append(time.monotonic() - started)
                peak = _status_kib(pid, "VmHWM")
                growths.append((peak - baseline) / 1024)
                log(f"upload memory: round {number}: document {document['id']}, peak grew "
                    f"{growths[-1]:.1f} MiB over a {baseline / 1024:.0f} MiB baseline, {seconds[-1]:.1f} s")
            resident = _status_kib(pid, "VmRSS") / 1024
    worst = max(growths)
    return UploadReport([
        {"benchmark": "document upload: server memory growth (50 MB PDF, chunked)", "value": round(worst, 1),
         "unit": "MiB", "target": f"< {TARGET_MB:g} MiB", "ok": worst < TARGET_MB, "rounds": rounds,
         "all": [round(g, 1) for g in growths], "resident_after_mib": round(resident, 1)},
        {"benchmark": "document upload: 50 MB PDF, upload + checks + encryption", "value": round(max(seconds), 1),
         "unit": "s", "throughput_mb_s": round(FILE_BYTES / 1_000_000 / max(seconds), 1)},
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one upload instead of three")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick).results
    for row in rows:
        print(f"{row['benchmark']}: {row['value']} {row['unit']}")
    print(json.dumps(rows, indent=2))
    return 0 if rows[0]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
