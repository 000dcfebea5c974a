"""Each optional extra, installed on its own, does what it is for; without it, the feature says which packages to
install (the command names exactly the extra's declared requirements) instead of failing on an import."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.install.conftest import CleanInstall, PackageFacts
from tests.install.running import call_tool, serve
from tests.support.postgres import PostgresMissing, PostgresServer, postgres_cluster
from tests.support.servers import LOOPBACK, free_port

WIDE = {"COLUMNS": "400"}  # one line per message: rich wraps at the terminal width

SQL_CONFIG = """
[[connectors]]
name = "crm"
type = "sql"
url = "{url}"
"""
HYBRID_CONFIG = """
[[connectors]]
name = "handbook"
type = "documents"
prefix = ""
ranking = "hybrid"
url_template = "https://intranet.example.com/{path_noext}"

[[connectors.sources]]
name = "handbook"
folder = "./handbook"
"""


def write(folder: Path, text: str) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(textwrap.dedent(text), encoding="utf-8")
    return config


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        ("sql-postgres", SQL_CONFIG.format(url="postgresql://reader@127.0.0.1:1/crm")),
        ("sql-mysql", SQL_CONFIG.format(url="mysql://reader@127.0.0.1:1/crm")),
        ("documents-embeddings", HYBRID_CONFIG),
    ],
)
def test_without_the_extra_the_feature_names_the_packages_to_install(
    extra: str, config: str, clean_install: CleanInstall, package_facts: PackageFacts, tmp_path: Path
) -> None:
    (tmp_path / "handbook").mkdir()
    (tmp_path / "handbook" / "a.md").write_text("# A\n\ntext\n", encoding="utf-8")

    done = clean_install.run("patchbay", "tools", "-c", str(write(tmp_path, config)), cwd=tmp_path, env=WIDE)

    message = one_line(done.stderr)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "patchbay.toml: connectors[" in message
    command = message[message.index(f"{clean_install.python} -m pip install") :]
    named = {re.split(r"[\[<>=!~ ']", token.strip("'"))[0].lower() for token in command.split()[4:]}
    assert package_facts.declared.extras[extra] <= named, command


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    try:
        cluster = postgres_cluster()
        server = cluster.__enter__()
    except PostgresMissing as exc:
        pytest.fail(f"{exc} (`make postgres` installs them)")
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)


def test_sql_postgres_extra_serves_a_real_postgresql_database(
    clean_install_with: Callable[[str], CleanInstall], pg: PostgresServer, tmp_path: Path
) -> None:
    pg.execute("CREATE DATABASE shop")
    pg.execute(
        "CREATE TABLE parts (id serial PRIMARY KEY, name text NOT NULL, price numeric(8, 2));"
        "INSERT INTO parts (name, price) VALUES ('gear', 12.50), ('shaft', 7.25)",
        database="shop",
    )
    url = pg.url("shop", with_password=False).replace("+psycopg", "")
    config = write(tmp_path, SQL_CONFIG.format(url=url) + 'password_env = "SHOP_DB_PASSWORD"\n')
    install = clean_install_with("sql-postgres")

    with serve(install, "--config", str(config), cwd=tmp_path, env={"SHOP_DB_PASSWORD": pg.password}) as server:
        rows = call_tool(server, "crm_query", {"sql": "SELECT name, price FROM parts ORDER BY price DESC"})
        refused = call_tool(server, "crm_query", {"sql": "UPDATE parts SET price = 0"})
        log = server.log_path.read_text(errors="replace")

    assert rows["isError"] is False, rows
    assert rows["structuredContent"]["rows"] == [["gear", 12.5], ["shaft", 7.25]]
    assert refused["isError"] is True
    assert pg.password not in log


def test_sql_mysql_extra_loads_the_driver_and_reports_an_unreachable_server(
    clean_install_with: Callable[[str], CleanInstall], tmp_path: Path
) -> None:
    # A live MariaDB is the sql tests' business (tests/e2e/test_sql_mariadb.py); here: the extra's driver is found
    # and the failure a user then meets is about the server, with no trace of a missing module.
    config = write(tmp_path, SQL_CONFIG.format(url=f"mysql://reader:hunter2-secret@{LOOPBACK}:{free_port()}/crm"))
    install = clean_install_with("sql-mysql")

    done = install.run("patchbay", "tools", "-c", str(config), cwd=tmp_path, env=WIDE)

    output = one_line(done.stdout + done.stderr)
    assert "not installed" not in output, output
    # PyMySQL's own error: the driver was imported and tried to connect.
    assert "unreachable" in output and "Can't connect to MySQL server" in output, output
    assert "Traceback" not in output
    assert "hunter2-secret" not in output


def test_documents_embeddings_extra_finds_a_page_by_meaning(
    clean_install_with: Callable[[str], CleanInstall], tmp_path: Path
) -> None:
    pages = {
        "parents.md": "# Family\n\nParents of a newborn baby get 26 weeks of paid leave.\n",
        "lunch.md": "# Cafeteria\n\nThe cafeteria serves lunch from noon until two.\n",
        "laptops.md": "# Laptops\n\nEvery laptop must use full-disk encryption.\n",
    }
    (tmp_path / "handbook").mkdir()
    for name, text in pages.items():
        (tmp_path / "handbook" / name).write_text(text, encoding="utf-8")
    config = write(tmp_path, HYBRID_CONFIG)
    install = clean_install_with("documents-embeddings")

    indexed = install.run("patchbay", "index", "-c", str(config), cwd=tmp_path, env=WIDE)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    with serve(install, "--config", str(config), cwd=tmp_path) as server:
        # No word of the query is in any page: only the embedding model can rank the family page first.
        found = call_tool(server, "search", {"query": "infant"})

    assert found["isError"] is False, found
    assert [hit["title"] for hit in found["structuredContent"]["results"]][:1] == ["Family"], found
