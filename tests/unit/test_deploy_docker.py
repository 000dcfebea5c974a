"""The Dockerfile, checked without a Docker daemon (none can pull base images here; docs/deploy.md says so).

Its properties are read with dockerfile-parse, and its steps are run the way a build would: the builder stage's RUN
lines, verbatim, through /bin/sh in a copy of what its COPY lines copy (the venv and wheel paths pointed into a
temporary folder), then the runtime stage's ENTRYPOINT + CMD on a loopback port and its HEALTHCHECK command
against it. A broken install line, entrypoint or health check fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from tests.support.servers import LOOPBACK, _die_with_parent, free_port, stop_process

from patchbay import settings as settings_mod

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_CONFIG = ROOT / "deploy" / "docker" / "patchbay.toml"
# Generous: it bounds only a wait that is failing anyway (a fresh venv installs from PyPI on a shared machine).
START_DEADLINE = 60.0


def _stages() -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, grouped by stage (each starts at a FROM)."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _one(stage: list[dict[str, Any]], name: str) -> str:
    found = [i["value"] for i in stage if i["instruction"] == name]
    assert len(found) == 1, f"expected one {name} in the stage, found {found}"
    return str(found[0])


def _env(stage: list[dict[str, Any]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction["instruction"] == "ENV":
            for pair in shlex.split(instruction["value"]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_has_a_builder_and_a_runtime_stage_on_the_same_python_image() -> None:
    stages = _stages()
    assert [s[0]["value"] for s in stages] == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in DOCKERFILE.read_text()
    runtime = stages[1]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    # The runtime gets the builder's venv and the default config, never the sources.
    assert copies == [
        "--from=builder /opt/patchbay /opt/patchbay",
        "deploy/docker/patchbay.toml /etc/patchbay/patchbay.toml",
    ]


def test_runtime_runs_as_numeric_non_root_user_with_data_under_data() -> None:
    runtime = _stages()[1]
    user, _, group = _one(runtime, "USER").partition(":")
    assert user.isdigit() and group.isdigit() and int(user) == 10001 and int(user) != 0
    assert _one(runtime, "WORKDIR") == "/data"
    assert json.loads(_one(runtime, "VOLUME")) == ["/data"]
    assert _env(runtime)["HOME"] == "/data"
    assert _env(runtime)["PYTHONDONTWRITEBYTECODE"] == "1"  # read-only root file system
    useradd = next(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert "--uid 10001" in useradd and "chown 10001:10001 /data" in useradd


def test_exposed_port_is_the_port_the_image_config_serves() -> None:
    runtime = _stages()[1]
    served = settings_mod.load(IMAGE_CONFIG, env={})
    assert _one(runtime, "EXPOSE") == str(served.server.port) == "8000"
    assert served.store_url == "sqlite:////data/patchbay.db"
    assert json.loads(_one(runtime, "ENTRYPOINT")) == ["patchbay", "serve", "--host", "0.0.0.0"]
    assert json.loads(_one(runtime, "CMD")) == ["--config", "/etc/patchbay/patchbay.toml"]


def test_builder_installs_the_fleet_extra_that_brings_redis_and_psycopg() -> None:
    builder = _stages()[0]
    runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert "[fleet]" in runs
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("[")[0] for req in extras["fleet"]}
    assert names == {"redis", "psycopg"}


def test_dockerignore_lets_through_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    sources = set()
    for stage in _stages():
        for instruction in stage:
            if instruction["instruction"] == "COPY" and not instruction["value"].startswith("--from"):
                *srcs, _dest = instruction["value"].split()
                sources |= {s.rstrip("/") for s in srcs}
    assert sources == {"pyproject.toml", "README.md", "src", "deploy/docker/patchbay.toml"}
    assert all(any(s == a or s.startswith(a + "/") for a in allowed) for s in sources), (sources, allowed)
    assert all((ROOT / s).exists() for s in sources)


def _build_context(tmp: Path, builder: list[dict[str, Any]]) -> Path:
    """The builder's WORKDIR with what its COPY lines put there."""
    context = tmp / "src"
    context.mkdir()
    for instruction in builder:
        if instruction["instruction"] != "COPY":
            continue
        *srcs, dest = instruction["value"].split()
        for src in srcs:
            origin = ROOT / src.rstrip("/")
            if origin.is_dir():
                target = context / dest.rstrip("/") if dest != "./" else context / origin.name
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
            else:
                shutil.copy2(origin, context / origin.name)
    return context


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_dockerfile_steps_build_an_install_whose_entrypoint_serves_and_passes_the_healthcheck(tmp_path: Path) -> None:
    builder, runtime = _stages()
    context = _build_context(tmp_path, builder)
    # The image's Python: the interpreter this venv was made from, first on PATH as `python`.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    venv, wheels = tmp_path / "opt-patchbay", tmp_path / "wheels"
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("PATCHBAY_")
    }
    env |= _env(builder) | {"VENV": str(venv), "WHEELS": str(wheels), "PATH": f"{shim}:{env['PATH']}"}
    env.pop("PIP_NO_CACHE_DIR")  # the one liberty taken: the test may reuse pip's cache of PyPI downloads
    for run in (i["value"] for i in builder if i["instruction"] == "RUN"):
        done = subprocess.run(["/bin/sh", "-c", run], cwd=context, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"RUN {run}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    data = tmp_path / "data"
    data.mkdir()
    runtime_env = {k: v.replace("/opt/patchbay", str(venv)) for k, v in _env(runtime).items()}
    port = free_port()
    run_env = {
        **{k: v for k, v in env.items() if k not in ("VENV", "WHEELS")},
        **runtime_env,
        "PATH": runtime_env["PATH"].replace("$PATH", env["PATH"]),
        "HOME": str(data),
        "PATCHBAY_STORE__URL": f"sqlite:///{data / 'patchbay.db'}",
        "PATCHBAY_SERVER__PORT": str(port),
    }
    # ENTRYPOINT + CMD as the image runs them, bound to loopback and reading the image's config from the checkout.
    argv = json.loads(_one(runtime, "ENTRYPOINT")) + json.loads(_one(runtime, "CMD"))
    argv = [
        LOOPBACK if a == "0.0.0.0" else str(IMAGE_CONFIG) if a == "/etc/patchbay/patchbay.toml" else a for a in argv
    ]
    assert shutil.which(argv[0], path=run_env["PATH"]) == str(venv / "bin" / "patchbay")
    healthcheck = json.loads(_one(runtime, "HEALTHCHECK").partition("CMD")[2])
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        argv, cwd=data, env=run_env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not _healthy(port):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the entrypoint did not serve /healthz in time"
            time.sleep(0.1)
        check = subprocess.run(healthcheck, cwd=data, env=run_env, capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        assert (data / "patchbay.db").is_file()
    finally:
        stop_process(server)
        log.close()
    # The same check fails once nothing answers: it can tell a dead container from a live one.
    check = subprocess.run(healthcheck, cwd=data, env=run_env, capture_output=True, text=True, check=False)
    assert check.returncode != 0


@pytest.mark.parametrize("path", ["/opt/patchbay", "/wheels"])
def test_builder_paths_are_named_once_in_env_so_the_steps_can_be_replayed(path: str) -> None:
    builder = _stages()[0]
    runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert path not in runs
    assert path in _env(builder).values()
