"""A fake Azure Files endpoint speaking the REST wire format of share snapshots, over real HTTP.

Azurite has no Azure Files, so this covers what ``ShareSnapshots`` needs, as documented for
the FileREST API: Snapshot Share (``PUT /{share}?restype=share&comp=snapshot``, 201 with
``x-ms-snapshot``) and List Shares (``GET /?comp=list&include=snapshots,metadata&prefix=``,
an ``EnumerationResults`` XML document). Addresses are path-style, as for a local emulator:
``http://127.0.0.1:<port>/<account>``. Every request needs ``x-ms-version``, ``x-ms-date`` and an
``Authorization: SharedKey <account>:<signature>`` header; the signature is not verified.
Errors are Azure Storage's XML bodies with ``x-ms-error-code``; ``failure`` makes every request
answer one.
"""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from fakes import LoopbackServer

ACCOUNT = "slipwaytest"
KEY = base64.b64encode(b"slipway-fake-file-share-account-key-0123456789abcdef").decode()


@dataclass
class FakeSnapshot:
    snapshot: str  # the x-ms-snapshot value, e.g. 2024-05-01T10:00:00.0000000Z
    metadata: dict[str, str]
    last_modified: datetime


@dataclass
class FakeShare:
    name: str
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    snapshots: list[FakeSnapshot] = field(default_factory=list)  # oldest first


class FakeFileService(LoopbackServer):
    """One storage account's file service; ``url`` is its account URL."""

    def __init__(self, account: str = ACCOUNT) -> None:
        self.account = account
        self.shares: dict[str, FakeShare] = {}
        self.failure: tuple[int, str, str] | None = None  # (status, x-ms-error-code, message)
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._start_server(_handler(self), path=f"/{account}")

    def add_share(self, name: str) -> FakeShare:
        self.shares[name] = FakeShare(name)
        return self.shares[name]

    def add_snapshot(self, share: str, metadata: dict[str, str], *, at: datetime) -> str:
        """A snapshot taken by someone else (the portal, Azure Backup) at a given time."""
        with self._lock:
            snap = FakeSnapshot(_snapshot_id(at), metadata, self.shares[share].last_modified)
            self.shares[share].snapshots.append(snap)
            self.shares[share].snapshots.sort(key=lambda s: s.snapshot)
            return snap.snapshot

    # --- the REST API; called by the handler with the lock held -------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        parts = path.strip("/").split("/")
        if not parts or parts[0] != self.account:
            return _error(
                400, "InvalidUri", "The requested URI does not represent any resource on the server."
            )
        if method == "GET" and len(parts) == 1 and query.get("comp") == "list":
            return 200, {"Content-Type": "application/xml"}, self._list(query)
        if method == "PUT" and len(parts) == 2 and query == {"restype": "share", "comp": "snapshot"}:
            share = self.shares.get(parts[1])
            if share is None:
                return _error(404, "ShareNotFound", "The specified share does not exist.")
            now = datetime.now(UTC)
            if share.snapshots and share.snapshots[-1].snapshot >= _snapshot_id(now):
                now = datetime.fromisoformat(share.snapshots[-1].snapshot) + timedelta(microseconds=1)
            metadata = {k[len("x-ms-meta-") :]: v for k, v in headers.items() if k.startswith("x-ms-meta-")}
            snap = FakeSnapshot(_snapshot_id(now), metadata, share.last_modified)
            share.snapshots.append(snap)
            return (
                201,
                {
                    "x-ms-snapshot": snap.snapshot,
                    "ETag": _etag(share.last_modified),
                    "Last-Modified": format_datetime(share.last_modified, usegmt=True),
                },
                "",
            )
        return _error(400, "UnsupportedHttpVerb", f"The resource doesn't support {method} {path}.")

    def _list(self, query: dict[str, str]) -> str:
        include = set(query.get("include", "").split(","))
        prefix = query.get("prefix", "")
        items: list[str] = []
        for share in sorted(self.shares.values(), key=lambda s: s.name):
            if not share.name.startswith(prefix):
                continue
            entries: list[tuple[str | None, dict[str, str], datetime]] = []
            if "snapshots" in include:
                entries += [(s.snapshot, s.metadata, s.last_modified) for s in share.snapshots]
            entries.append((None, {}, share.last_modified))
            for snapshot, metadata, modified in entries:
                xml = f"<Share><Name>{escape(share.name)}</Name>"
                if snapshot:
                    xml += f"<Snapshot>{snapshot}</Snapshot>"
                xml += (
                    f"<Properties><Last-Modified>{format_datetime(modified, usegmt=True)}</Last-Modified>"
                    f"<Etag>{escape(_etag(modified))}</Etag><Quota>100</Quota>"
                    "<AccessTier>TransactionOptimized</AccessTier><EnabledProtocols>SMB</EnabledProtocols>"
                    "</Properties>"
                )
                if "metadata" in include:
                    pairs = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in metadata.items())
                    xml += f"<Metadata>{pairs}</Metadata>"
                items.append(xml + "</Share>")
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="{escape(self.url)}/">'
            f"<Prefix>{escape(prefix)}</Prefix><Shares>{''.join(items)}</Shares><NextMarker /></EnumerationResults>"
        )


def _snapshot_id(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _etag(when: datetime) -> str:
    return f'"0x{int(when.timestamp() * 10_000_000):X}"'


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    detail = f"{message}\nRequestId:{uuid.uuid4()}\nTime:{datetime.now(UTC).isoformat()}"
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(detail)}</Message></Error>'
    return status, {"x-ms-error-code": code, "Content-Type": "application/xml"}, body


def _handler(service: FakeFileService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            with service._lock:
                service.headers.append(headers)
                if not (headers.get("authorization") or "").startswith(f"SharedKey {service.account}:"):
                    status, extra, body = _error(
                        403,
                        "AuthenticationFailed",
                        "Server failed to authenticate the request. Make sure the value of Authorization "
                        "header is formed correctly including the signature.",
                    )
                elif "x-ms-version" not in headers or "x-ms-date" not in headers:
                    status, extra, body = _error(
                        400,
                        "MissingRequiredHeader",
                        "An HTTP header that's mandatory for this request is not specified.",
                    )
                elif service.failure is not None:
                    status, extra, body = _error(*service.failure)
                else:
                    status, extra, body = service.handle(self.command, url.path, query, headers)
                service.requests.append((self.command, self.path, status))
            data = body.encode()
            response_headers = {
                "x-ms-request-id": str(uuid.uuid4()),
                "x-ms-version": headers.get("x-ms-version", ""),
                "Date": format_datetime(datetime.now(UTC), usegmt=True),
                "Server": "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0",
                **extra,
                "Content-Length": str(len(data)),
            }
            self.send_response(status)
            for key, value in response_headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
