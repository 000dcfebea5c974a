"""The `patchbay` command as a user runs it: tools, call, init → serve, and the config errors serve reports."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e import kanban
from tests.e2e.conftest import CONFORMANCE_CONFIG, Completed, patchbay_cli, run_scenario
from tests.support.servers import LOOPBACK, RunningServer, free_port, run_patchbay

pytestmark = pytest.mark.e2e

CONFORMANCE = ("--config", str(CONFORMANCE_CONFIG))


def one_line(text: str) -> str:
    """Rich may still wrap or pad messages; compare them with whitespace collapsed."""
    return " ".join(text.split())


def exited(done: Completed, code: int) -> Completed:
    assert done.returncode == code, done.describe()
    return done


def test_tools_json_lists_the_configured_tools(tmp_path: Path) -> None:
    listed = exited(patchbay_cli("tools", "--json", *CONFORMANCE, cwd=tmp_path), 0).json()

    by_name = {t["name"]: t for t in listed["tools"]}
    assert {"test_simple_text", "test_tool_with_progress", "test_sampling", "test_elicitation"} <= by_name.keys()
    assert by_name["test_sampling"]["inputSchema"]["required"] == ["prompt"]
    assert by_name["test_simple_text"]["annotations"]["readOnlyHint"] is True


def test_tools_json_lists_the_demo_tools(tmp_path: Path) -> None:
    env = {"PATCHBAY_DEMO_DIR": str(tmp_path / "demo")}
    listed = exited(patchbay_cli("tools", "--json", "--demo", cwd=tmp_path, env=env), 0).json()

    kanban.assert_demo_tool_list(listed["tools"])


def test_call_prints_the_tool_result_as_json(tmp_path: Path) -> None:
    result = exited(patchbay_cli("call", "test_simple_text", *CONFORMANCE, cwd=tmp_path), 0).json()

    assert result == {
        "content": [{"type": "text", "text": "This is a simple text response for testing."}],
        "isError": False,
    }


def test_call_writes_a_demo_card_that_a_later_call_reads_back(tmp_path: Path) -> None:
    env = {"PATCHBAY_DEMO_DIR": str(tmp_path / "demo")}

    def call(tool: str, args: dict[str, object]) -> dict[str, object]:
        done = exited(patchbay_cli("call", tool, "--args", json.dumps(args), "--demo", cwd=tmp_path, env=env), 0)
        result = done.json()
        assert result["isError"] is False, done.describe()
        structured: dict[str, object] = result["structuredContent"]
        return structured

    board = kanban.first_board(call("list_boards", {}))
    title = kanban.unique_title("cli")
    created = call("create_card", kanban.create_card_args(board, title))
    kanban.assert_created(created, board, title)
    kanban.assert_same_card(call("get_card", {"card_id": created["id"]}), created)


def test_call_exits_1_when_the_tool_reports_an_error(tmp_path: Path) -> None:
    done = exited(patchbay_cli("call", "test_error_handling", *CONFORMANCE, cwd=tmp_path), 1)

    result = done.json()
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "This tool intentionally returns an error for testing"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{a: 1", "--args is not valid JSON"),
        ("[1, 2]", "--args must be a JSON object"),
    ],
)
def test_call_exits_2_with_a_clear_message_for_bad_args(tmp_path: Path, args: str, message: str) -> None:
    done = exited(patchbay_cli("call", "test_simple_text", "--args", args, *CONFORMANCE, cwd=tmp_path), 2)

    assert message in one_line(done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


USER_TOOL = '''

@tool(read_only=True, open_world=False)
async def multiply(a: float, b: float) -> float:
    """Multiply two numbers (a tool the user added to the generated file)."""
    return a * b
'''


def test_init_writes_a_config_whose_tools_a_python_sdk_client_can_call(tmp_path: Path) -> None:
    project = tmp_path / "project"
    done = exited(patchbay_cli("init", str(project), cwd=tmp_path), 0)
    config, tools_py = project / "patchbay.toml", project / "tools.py"
    assert config.is_file() and tools_py.is_file(), done.describe()
    assert "patchbay serve --config" in one_line(done.stderr)
    with tools_py.open("a", encoding="utf-8") as f:
        f.write(USER_TOOL)

    with run_patchbay(config, log_dir=tmp_path / "logs") as server:

        async def scenario() -> tuple[list[types.Tool], types.CallToolResult, types.CallToolResult]:
            async with Client(server.url, mode="legacy") as client:
                tools = (await client.list_tools()).tools
                added = await client.call_tool("add", {"a": 2, "b": 40})
                multiplied = await client.call_tool("multiply", {"a": 1.5, "b": 4})
                return tools, added, multiplied

        tools, added, multiplied = run_scenario(scenario)

    by_name = {t.name: t for t in tools}
    assert {"add", "greet", "multiply"} <= by_name.keys()
    assert by_name["add"].description == "Add two integers."
    assert by_name["add"].output_schema is not None
    assert by_name["add"].output_schema["properties"]["result"]["type"] == "integer"
    assert added.is_error is False
    assert added.structured_content == {"result": 42}
    # MCP 2025-06-18 tools: a structured result also travels as its JSON text, for clients that read only text.
    [text] = added.content
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text) == {"result": 42}
    assert multiplied.structured_content == {"result": 6.0}


def serve(*args: str, cwd: Path) -> Completed:
    """`patchbay serve` that must fail before binding; a free port keeps a regression from taking port 8000."""
    return patchbay_cli("serve", "--host", LOOPBACK, "--port", str(free_port()), *args, cwd=cwd)


def test_serve_with_a_missing_config_exits_2_naming_the_file(tmp_path: Path) -> None:
    done = exited(serve("--config", "missing.toml", cwd=tmp_path), 2)

    assert "missing.toml" in one_line(done.stderr)
    assert "Traceback" not in done.stderr


def test_serve_with_a_typo_in_a_config_key_exits_2_suggesting_the_key(tmp_path: Path) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(
        textwrap.dedent("""\
        [server]
        prot = 1
    """)
    )

    done = exited(serve("--config", str(config), cwd=tmp_path), 2)

    message = one_line(done.stderr)
    assert "prot" in message
    assert "did you mean 'port'" in message.lower()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("toml", "shown"),
    [
        ("[server]\nprot = 1\n", "unknown key in [server] 'server.prot'"),
        ("store = 1\n", "[store] must be a table, got 1"),
    ],
    ids=["unknown-key", "not-a-table"],
)
def test_serve_config_errors_keep_the_table_name_in_brackets(tmp_path: Path, toml: str, shown: str) -> None:
    """Messages name TOML tables as `[server]`; the terminal must print them, not read them as rich markup."""
    config = tmp_path / "patchbay.toml"
    config.write_text(toml)

    done = exited(serve("--config", str(config), cwd=tmp_path), 2)

    assert shown in one_line(done.stderr)


def test_serve_on_a_port_in_use_exits_3_before_starting_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATCHBAY_DEMO_DIR": str(tmp_path / "demo")}
        done = patchbay_cli("serve", "--demo", "--host", LOOPBACK, "--port", str(port), cwd=tmp_path, env=env)

    exited(done, 3)
    message = one_line(done.stderr)
    assert f"cannot listen on {LOOPBACK}:{port}: address already in use" in message
    assert "--port" in message
    assert "serving" not in done.stdout + done.stderr and "Errno" not in message
    assert list((tmp_path / "demo").glob("*.db")) == []  # no connector or store was opened


def test_the_documented_doctor_command_passes_against_the_demo(demo_server: RunningServer, tmp_path: Path) -> None:
    """docs/doctor.md: `make demo`, then `patchbay doctor http://127.0.0.1:8000/mcp --local` exits 0."""
    done = patchbay_cli("doctor", demo_server.url, "--local", "--json", "--stream-hold", "1", cwd=tmp_path)

    clients = exited(done, 0).json()["clients"]
    failed = [(name, c["id"]) for name, client in clients.items() for c in client["checks"] if c["status"] == "fail"]
    assert failed == []
    for name in ("chatgpt", "claude"):  # they send their web origin: the demo must accept it
        origin = next(c for c in clients[name]["checks"] if c["id"] == "origin.accepted")
        assert origin["status"] == "pass", origin
