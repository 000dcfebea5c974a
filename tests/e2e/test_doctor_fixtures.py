"""The doctor against deliberately broken servers: each must fail exactly its own checks and nothing else."""

from __future__ import annotations

import dataclasses

import pytest

from tests.e2e.doctor_fixtures.base import TOKEN, OAuthServer, Server
from tests.e2e.doctor_fixtures.broken import CASES
from tests.e2e.doctor_support import TEST_OPTIONS, doctor, explain, failing, serve_app

pytestmark = pytest.mark.e2e


def test_the_good_fixture_passes_every_profile() -> None:
    with serve_app(Server().app()) as url:
        report = doctor(url)
    assert failing(report) == set(), explain(report)
    assert report.exit_code == 0


def test_the_good_oauth_fixture_passes_with_and_without_a_token() -> None:
    with serve_app(OAuthServer().app()) as url:
        anonymous = doctor(url)
        signed_in = doctor(url, dataclasses.replace(TEST_OPTIONS, token=TOKEN))
    assert failing(anonymous) == set(), explain(anonymous)
    assert failing(signed_in) == set(), explain(signed_in)
    passed = {r.id for r in signed_in.results if r.status.value == "pass"}
    assert {"auth.challenge", "auth.pkce", "registration.dcr", "registration.redirects", "signin.token"} <= passed


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_broken_server_fails_exactly_its_checks(name: str) -> None:
    case = CASES[name]
    options = dataclasses.replace(
        TEST_OPTIONS,
        token=TOKEN if case.token else None,
        slow_fail=case.slow_fail,
        slow_warn=min(2.0, case.slow_fail / 2),
    )
    with serve_app(case.server().app()) as url:
        report = doctor(url, options)
    assert failing(report) == case.fails, explain(report)
    assert report.exit_code == 1
    for result in report.failed():
        assert result.why and result.fix, result
