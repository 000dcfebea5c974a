"""Tool names for OpenAPI operations: derived, sanitised, within 64 with the prefix, stable under reordering."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchbay.connectors.openapi.models import Operation
from patchbay.connectors.openapi.naming import assign_names, derived_name, fit, humanise, snake, title_of
from patchbay.errors import ConfigError

CLIENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def op(method: str, path: str, operation_id: str | None = None, summary: str = "") -> Operation:
    return Operation(method, path, operation_id, summary=summary)


@pytest.mark.parametrize(
    ("given_id", "expected"),
    [
        ("listTickets", "list_tickets"),
        ("tickets.list", "tickets_list"),
        ("repos/get-content", "repos_get_content"),
        ("getHTTPStatus", "get_http_status"),
        ("Über Größe", "uber_grosse"),
        ("  __weird__--name  ", "weird_name"),
    ],
)
def test_operation_ids_are_snake_cased(given_id: str, expected: str) -> None:
    assert snake(given_id) == expected


def test_an_operation_without_an_id_is_named_by_method_and_path() -> None:
    assert derived_name(op("GET", "/tickets/{id}")) == "get_tickets_by_id"
    assert derived_name(op("DELETE", "/orgs/{org}/members/{user-name}")) == "delete_orgs_by_org_members_by_user_name"
    assert derived_name(op("GET", "/")) == "get"


def test_an_operation_id_with_no_usable_characters_falls_back_to_method_and_path() -> None:
    assert derived_name(op("POST", "/tickets", "日本")) == "post_tickets"


def test_a_long_name_is_abbreviated_before_it_is_cut() -> None:
    name = "get_organization_repository_configuration"
    assert fit(name, "GET /x", 30) == "get_org_repo_config"


def test_a_name_too_long_even_abbreviated_is_cut_and_given_a_hash_of_its_key() -> None:
    name = "x" * 80
    one, other = fit(name, "GET /a", 40), fit(name, "GET /b", 40)
    assert len(one) == 40 and len(other) == 40
    assert one != other
    assert one == fit(name, "GET /a", 40)  # the same key, the same name


def test_final_names_with_the_prefix_fit_64_characters() -> None:
    ops = [op("GET", f"/{'segment' * 12}/{i}", f"{'veryLongOperationName' * 4}{i}") for i in range(5)]
    names = assign_names(ops, "a_long_connector_prefix_")
    assert len(set(names.values())) == 5
    for name in names.values():
        assert CLIENT_NAME.match("a_long_connector_prefix_" + name)


def test_colliding_names_get_a_suffix_from_the_operation_key_and_the_smallest_key_keeps_the_plain_name() -> None:
    ops = [op("POST", "/b", "tickets.list"), op("GET", "/a", "tickets_list"), op("PUT", "/c", "ticketsList")]
    names = assign_names(ops, "t_")
    assert names["GET /a"] == "tickets_list"
    assert names["POST /b"].startswith("tickets_list_") and names["PUT /c"].startswith("tickets_list_")
    assert len(set(names.values())) == 3


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(8))))
def test_names_do_not_depend_on_the_order_of_operations(order: list[int]) -> None:
    ops = [
        op("GET", "/tickets", "listTickets"),
        op("POST", "/tickets", "list_tickets"),
        op("GET", "/tickets/{id}"),
        op("GET", "/tickets/by_id"),
        op("PATCH", "/tickets/{id}", "x" * 90),
        op("PUT", "/tickets/{id}", "x" * 90),
        op("DELETE", "/tickets/{id}", "tickets.list"),
        op("HEAD", "/tickets", "listTickets"),
    ]
    expected = assign_names(ops, "tickets_")
    assert assign_names([ops[i] for i in order], "tickets_") == expected
    assert len(set(expected.values())) == len(ops)


def test_a_chosen_name_wins_and_the_derived_name_makes_way() -> None:
    ops = [op("GET", "/a", "alpha"), op("GET", "/b", "beta")]
    names = assign_names(ops, "p_", {"GET /b": ("alpha", "operations.beta")})
    assert names["GET /b"] == "alpha"
    assert names["GET /a"].startswith("alpha_") and names["GET /a"] != "alpha"


def test_a_chosen_name_too_long_with_the_prefix_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="over 64") as caught:
        assign_names([op("GET", "/a", "alpha")], "prefix_", {"GET /a": ("n" * 60, "operations.alpha")})
    assert caught.value.key == "operations.alpha"


def test_one_name_chosen_for_two_operations_is_a_config_error() -> None:
    ops = [op("GET", "/a", "alpha"), op("GET", "/b", "beta")]
    chosen = {"GET /a": ("same", "operations.alpha"), "GET /b": ("same", "operations.beta")}
    with pytest.raises(ConfigError, match="both named 'same'") as caught:
        assign_names(ops, "", chosen)
    assert caught.value.key == "operations.beta"


def test_a_prefix_leaving_no_room_for_names_is_refused() -> None:
    with pytest.raises(ConfigError, match="leaves") as caught:
        assign_names([op("GET", "/a")], "p" * 60)
    assert caught.value.key == "prefix"


def test_titles_come_from_the_summary_else_the_operation_id_else_the_key() -> None:
    assert title_of(op("GET", "/a", "listTickets", summary="List tickets\nmore")) == "List tickets"
    assert title_of(op("GET", "/a", "listOpenTickets")) == "List open tickets"
    assert title_of(op("GET", "/a/{id}")) == "GET /a/{id}"
    assert humanise("tickets.list") == "Tickets list"
