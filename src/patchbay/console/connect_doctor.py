"""The Connect page's doctor: ``patchbay doctor <public MCP URL>`` run from inside the server, bounded in time,
its outbound requests under the SSRF guard, its report shaped for a template.

The public URL is the operator's own configuration, so its host is trusted as configured (as an upstream's
``url`` is); every other host the doctor is pointed at (an authorization server named in metadata, a client
metadata document) stays under ``[outbound]``. No tool is called and no token is sent: the report covers what a
client meets before and at sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import httpx

from patchbay.connect_steps import is_public_https
from patchbay.doctor.context import Options
from patchbay.doctor.model import STEPS, Result, Status
from patchbay.doctor.profiles import PROFILE_NAMES, load_profiles
from patchbay.doctor.runner import CouldNotRun, Report, run
from patchbay.outbound import FetchError, fetcher_for
from patchbay.outbound.fetcher import trusting_origin
from patchbay.settings import Settings

__all__ = ["DOCTOR_DEADLINE", "CheckRow", "ClientVerdict", "DoctorOutcome", "run_doctor"]

# A page request that runs the doctor waits for it: long enough for four profiles against a slow tunnel, short
# enough that a person is not left with a spinning tab.
DOCTOR_DEADLINE = 45.0


@dataclass(frozen=True)
class CheckRow:
    id: str
    step: str
    status: str
    why: str
    fix: str


@dataclass(frozen=True)
class ClientVerdict:
    title: str
    ready: bool
    rows: tuple[CheckRow, ...]


@dataclass(frozen=True)
class DoctorOutcome:
    """What the page shows: one verdict per client, or ``error`` when the doctor could not run at all."""

    url: str
    clients: tuple[ClientVerdict, ...] = ()
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)


async def run_doctor(
    settings: Settings,
    *,
    deadline: float = DOCTOR_DEADLINE,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DoctorOutcome:
    """Check the server's own public MCP URL as every client profile connects to it.

    Never raises for a failed run: an unreachable URL, a refused address or the deadline become ``error``.
    """
    url = settings.mcp_url
    fetcher = await trusting_origin(fetcher_for(settings.outbound, transport=transport), url)
    # A loopback or plain-http public URL is a local stand-in: skip the https/443/public-address checks there.
    options = Options(local=not is_public_https(url), calls=False, stream_hold=0.0)
    try:
        with anyio.fail_after(deadline):
            async with fetcher.client() as http:
                report = await run(url, list(PROFILE_NAMES), options, http=http)
    except TimeoutError:
        return DoctorOutcome(url, error=f"the doctor did not finish within {deadline:g} s")
    except CouldNotRun as exc:
        return DoctorOutcome(url, error=str(exc))
    except FetchError as exc:  # Refused is a FetchError: the guard stopped a request
        return DoctorOutcome(url, error=f"an outbound request was stopped: {exc}")
    except ExceptionGroup as group:  # the same, from inside the doctor's task group
        stopped = group.subgroup(FetchError)
        if stopped is None:
            raise
        return DoctorOutcome(url, error=f"an outbound request was stopped: {_first(stopped)}")
    return _shape(report)


def _first(group: BaseExceptionGroup[FetchError]) -> BaseException:
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner


def _shape(report: Report) -> DoctorOutcome:
    profiles = load_profiles()
    order = list(STEPS)
    clients = []
    for name, results in report.clients.items():
        shown = sorted((r for r in results if r.status is not Status.SKIP), key=lambda r: order.index(r.check.step))
        failed = any(r.status is Status.FAIL for r in results)
        clients.append(ClientVerdict(profiles[name].title, not failed, tuple(_row(r) for r in shown)))
    counts = {s.value: sum(1 for r in report.results if r.status is s) for s in Status}
    return DoctorOutcome(report.url, tuple(clients), counts=counts)


def _row(result: Result) -> CheckRow:
    fix = result.fix if result.status in (Status.FAIL, Status.WARN) else ""
    return CheckRow(result.id, STEPS[result.check.step], result.status.value, result.why, fix)
