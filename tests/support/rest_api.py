"""A real REST service with its own OpenAPI 3.1 description (tests/fixtures/openapi/rest_api.yaml), for the
openapi connector's tests: tickets and customers, every parameter location, JSON, form, multipart, text and binary
bodies, bearer / API key / basic auth, and the errors a real API gives (problem+json 400, 401, 404, 429 with
Retry-After, 500).

It records every request it receives (method, path, query, headers, body) so a test can assert exactly what the
connector sent, and that no token of Patchbay's own clients ever arrived. ``serving()`` runs it with uvicorn in a
thread of the test process on a free loopback port; ``python -m tests.support.rest_api --port N`` runs it alone
(the benchmark uses that, so the service's CPU is not counted as the connector's).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "openapi" / "rest_api.yaml"
BEARER_TOKEN = "rest-api-bearer-7f3a9c"
API_KEY = "rest-api-key-52d1"
BASIC_USER, BASIC_PASSWORD = "stats", "rest-api-basic-e8b0"
# A 1x1 transparent PNG: the badge every ticket has.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the service received it."""

    method: str
    path: str  # as sent, percent-encoded
    query: str  # raw query string, percent-encoded
    headers: tuple[tuple[str, str], ...]  # lower-case names, in order
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else default

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RestApi:
    """The service's state: its data, what it received, and its address once serving."""

    url: str = ""  # http://127.0.0.1:PORT (the API is under /api, the spec at /openapi.yaml)
    received: list[Recorded] = field(default_factory=list)
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    busy_seen: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def spec_url(self) -> str:
        return f"{self.url}/openapi.yaml"

    def to(self, method: str, path: str) -> list[Recorded]:
        """The requests received for ``method path`` (path without the /api prefix)."""
        return [r for r in self.received if r.method == method and r.path == f"/api{path}"]

    def app(self) -> Starlette:
        return Starlette(routes=_routes(self))


def problem(status: int, title: str, detail: str = "", errors: list[dict[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    headers = {"WWW-Authenticate": 'Bearer realm="tickets"'} if status == 401 else None
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/problem+json")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def _authorised(request: Request, scheme: str) -> bool:
    if scheme == "apiKey":
        return request.query_params.get("api_key") == API_KEY
    header = request.headers.get("authorization", "")
    if scheme == "basic":
        expected = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        return secrets.compare_digest(header, f"Basic {expected}")
    return secrets.compare_digest(header, f"Bearer {BEARER_TOKEN}")


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise _Invalid(name, f"must be an integer from {low} to {high}")
    return int(value)


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _ticket_from(api: RestApi, body: Any, ticket_id: int) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("title"), str) or not body["title"]:
        raise _Invalid("title", "is required and must be a non-empty string")
    labels = body.get("labels", [])
    for index, label in enumerate(labels):
        if label == "forbidden":
            raise _Invalid(f"labels[{index}]", "label 'forbidden' is reserved")
    return {
        "id": ticket_id,
        "title": body["title"],
        "description": body.get("description"),
        "status": body.get("status", "open"),
        "priority": body.get("priority", "normal"),
        "labels": labels,
        "customer": body.get("customer"),
        "comments": body.get("comments", []),
    }


def _routes(api: RestApi) -> list[Route]:
    async def list_tickets(request: Request) -> Response:
        query = request.query_params
        page = _int(query.get("page"), "page", 1, 1, 10_000)
        per_page = _int(query.get("per_page"), "per_page", 20, 1, 100)
        chosen = list(reversed(api.tickets.values()))
        if "status" in query:
            chosen = [t for t in chosen if t["status"] == query["status"]]
        for label in query.getlist("labels"):
            chosen = [t for t in chosen if label in t["labels"]]
        if "filter[priority]" in query:
            chosen = [t for t in chosen if t["priority"] == query["filter[priority]"]]
        if "filter[customer_id]" in query:
            wanted = _int(query["filter[customer_id]"], "filter[customer_id]", 0, 1, 2**31)
            chosen = [t for t in chosen if (t["customer"] or {}).get("id") == wanted]
        items = chosen[(page - 1) * per_page : page * per_page]
        return json_response({"items": items, "page": page, "per_page": per_page, "total": len(chosen)})

    async def create_ticket(request: Request) -> Response:
        ticket = _ticket_from(api, orjson.loads(await request.body()), next(api._ids))
        api.tickets[ticket["id"]] = ticket
        return json_response(ticket, 201)

    def found(request: Request) -> dict[str, Any]:
        ticket_id = _int(request.path_params["ticket_id"], "ticket_id", 0, 1, 2**31)
        if ticket_id not in api.tickets:
            raise _NotFound(ticket_id)
        return api.tickets[ticket_id]

    async def one_ticket(request: Request) -> Response:
        ticket = found(request)
        if request.method == "GET":
            return json_response(ticket)
        if request.method == "DELETE":
            del api.tickets[ticket["id"]]
            return Response(status_code=204)
        body = orjson.loads(await request.body())
        if request.method == "PUT":
            api.tickets[ticket["id"]] = _ticket_from(api, body, ticket["id"])
        else:
            ticket.update({key: body[key] for key in ("title", "status", "priority") if key in body})
        return json_response(api.tickets[ticket["id"]])

    async def add_comment(request: Request) -> Response:
        ticket = found(request)
        comment = orjson.loads(await request.body())
        ticket["comments"].append(comment)
        return json_response(comment, 201)

    async def upload(request: Request) -> Response:
        found(request)
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise _Invalid("file", "must be a file part")
            content = await upload.read()
            name = form.get("filename")
            filename = name if isinstance(name, str) else (upload.filename or "")
            content_type = upload.content_type or ""
        return json_response({"filename": filename, "size": len(content), "content_type": content_type}, 201)

    async def badge(request: Request) -> Response:
        found(request)
        return Response(PNG, media_type="image/png")

    async def summary(request: Request) -> Response:
        ticket = found(request)
        return Response(f"#{ticket['id']} [{ticket['status']}] {ticket['title']}", media_type="text/plain")

    async def customers(request: Request) -> Response:
        if request.method == "GET":
            needle = request.query_params.get("q", "").lower()
            return json_response([c for c in api.customers.values() if needle in c["name"].lower()])
        async with request.form() as form:
            name = form.get("name")
            if not isinstance(name, str) or not name:
                raise _Invalid("name", "is required")
            email, vip = form.get("email"), form.get("vip", "false")
        if vip not in ("true", "false"):
            raise _Invalid("vip", "must be true or false")
        customer = {"id": next(api._ids), "name": name, "email": email, "vip": vip == "true"}
        api.customers[customer["id"]] = customer
        return json_response(customer, 201)

    async def stats(request: Request) -> Response:
        return json_response({"tickets": len(api.tickets), "customers": len(api.customers)})

    async def preferences(request: Request) -> Response:
        return json_response({"theme": request.cookies.get("theme")})

    async def busy(request: Request) -> Response:
        key = request.path_params["key"]
        api.busy_seen[key] = api.busy_seen.get(key, 0) + 1
        if api.busy_seen[key] == 1:
            return Response(b"slow down", 429, headers={"Retry-After": "1"}, media_type="text/plain")
        return json_response({"key": key, "attempts": api.busy_seen[key]})

    async def broken(request: Request) -> Response:
        return problem(500, "Internal Server Error", "the ticket database is unavailable")

    async def spec(request: Request) -> Response:
        return Response(SPEC_PATH.read_bytes(), media_type="application/yaml")

    table: list[tuple[str, Any, list[str], str | None]] = [
        ("/api/tickets", list_tickets, ["GET"], "bearer"),
        ("/api/tickets", create_ticket, ["POST"], "bearer"),
        ("/api/tickets/{ticket_id}", one_ticket, ["GET", "PUT", "PATCH", "DELETE"], "bearer"),
        ("/api/tickets/{ticket_id}/comments", add_comment, ["POST"], "bearer"),
        ("/api/tickets/{ticket_id}/attachments", upload, ["POST"], "bearer"),
        ("/api/tickets/{ticket_id}/badge", badge, ["GET"], "bearer"),
        ("/api/tickets/{ticket_id}/summary", summary, ["GET"], "bearer"),
        ("/api/customers", customers, ["GET"], "apiKey"),
        ("/api/customers", customers, ["POST"], "bearer"),
        ("/api/admin/stats", stats, ["GET"], "basic"),
        ("/api/preferences", preferences, ["GET"], "bearer"),
        ("/api/busy/{key}", busy, ["GET"], "bearer"),
        ("/api/broken", broken, ["GET"], "bearer"),
        ("/openapi.yaml", spec, ["GET"], None),
    ]
    return [Route(path, _recorded(api, handler, scheme), methods=methods) for path, handler, methods, scheme in table]


class _NotFound(Exception):
    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"no ticket {ticket_id}")


def _recorded(api: RestApi, handler: Any, scheme: str | None) -> Any:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        api.received.append(
            Recorded(
                method=request.method,
                path=raw_path.decode("latin-1"),
                query=request.scope["query_string"].decode("latin-1"),
                headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]),
                body=body,
            )
        )
        if scheme is not None and not _authorised(request, scheme):
            return problem(401, "Unauthorized", f"this operation needs {scheme} credentials")
        try:
            response: Response = await handler(request)
        except _Invalid as exc:
            errors = [{"field": exc.field, "message": exc.message}]
            return problem(400, "Validation failed", f"{exc.field} {exc.message}", errors)
        except _NotFound as exc:
            return problem(404, "Not Found", str(exc))
        except orjson.JSONDecodeError as exc:
            return problem(400, "Bad Request", f"the body is not JSON: {exc}")
        request_id = request.headers.get("x-request-id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response

    return endpoint


@contextlib.contextmanager
def serving(api: RestApi | None = None) -> Iterator[RestApi]:
    """The service on a free loopback port, in a thread of this process; stopped on exit."""
    api = api or RestApi()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them: no start-up polling
    server = uvicorn.Server(uvicorn.Config(api.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield api
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(RestApi().app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
