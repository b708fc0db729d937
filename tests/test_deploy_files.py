"""Dockerfile, docker-compose.yml and the entrypoint: parsed and checked against what config/ reads.

No Docker engine runs here, so nothing is built; these tests pin the wiring.
"""
from __future__ import annotations

import ast
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from config import SETTINGS, load_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def config_env_names() -> set[str]:
    """Every environment variable config/ reads: ARCHIVER_ENV and the settings table."""
    return {"ARCHIVER_ENV"} | {s.name for s in SETTINGS}


def entrypoint_env_names() -> set[str]:
    return set(re.findall(r"\$\{(\w+):-", ENTRYPOINT.read_text()))


def interpolate(value: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR:?error}."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise LookupError(arg or f"{name} is required")
        return arg if op == "-" else ""
    return _INTERPOLATION.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def service_env(compose: dict) -> dict[str, str]:
    env = compose["services"]["archiver"]["environment"]
    assert isinstance(env, dict), "use the mapping form for environment"
    return {k: str(v) for k, v in env.items()}


def test_service_env_names_are_read_by_the_app(compose):
    known = config_env_names() | entrypoint_env_names()
    assert {"ARCHIVER_ENV", "SOURCE_DATABASE_URL", "ARCHIVE_DATABASE_URL", "JWT_SECRET_KEY"} <= config_env_names()
    unknown = set(service_env(compose)) - known
    assert not unknown, f"docker-compose sets variables nothing reads: {unknown}"


def test_service_wiring(compose):
    env = service_env(compose)
    assert env["ARCHIVER_ENV"] == "production"
    assert env["JWT_SECRET_KEY"] == "${JWT_SECRET_KEY:?set JWT_SECRET_KEY}"
    db = compose["services"]["db"]
    assert db["image"].split(":")[1].startswith("16")
    user = db["environment"]["POSTGRES_USER"]
    assert db["environment"]["POSTGRES_DB"] == "source"
    for key, database in (("SOURCE_DATABASE_URL", "source"), ("ARCHIVE_DATABASE_URL", "archive")):
        url = interpolate(env[key], {})
        assert re.fullmatch(rf"postgresql://{user}:[^@]+@db:5432/{database}", url), url
    svc = compose["services"]["archiver"]
    assert svc["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in db and "archive" in " ".join(db["healthcheck"]["test"])
    assert any(str(p).endswith(":8000") for p in svc["ports"])


def test_postgres_volume_and_second_database(compose):
    db = compose["services"]["db"]
    volumes = [str(v) for v in db["volumes"]]
    assert "pgdata" in compose["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in volumes
    mounts = [v for v in volumes if v.split(":")[1] == "/docker-entrypoint-initdb.d"]
    assert mounts, "the init scripts directory is not mounted"
    init_dir = ROOT / mounts[0].split(":")[0]
    scripts = " ".join(p.read_text() for p in sorted(init_dir.iterdir()))
    assert re.search(r"CREATE DATABASE\s+archive\b", scripts, re.I)


def test_jwt_secret_is_required(compose):
    with pytest.raises(LookupError, match="set JWT_SECRET_KEY"):
        interpolate(service_env(compose)["JWT_SECRET_KEY"], {})


def test_compose_environment_makes_a_valid_production_config(compose, tmp_path):
    env = {k: interpolate(v, {"JWT_SECRET_KEY": "s" * 48}) for k, v in service_env(compose).items()}
    cfg = load_config(str(tmp_path), env)
    validate_config(cfg)  # raises ConfigError if the wiring were wrong
    assert cfg["ENV_NAME"] == "production"
    assert cfg["SQLALCHEMY_DATABASE_URI"].endswith("@db:5432/archive")
    assert cfg["SOURCE_DATABASE_URL"].endswith("@db:5432/source")
    assert cfg["SCHEDULER_ENABLED"] is True


def test_dockerfile_base_user_healthcheck_and_cmd(dockerfile):
    instructions = dict()
    for instruction, args in dockerfile:
        instructions.setdefault(instruction, []).append(args)
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert any("pip install -r requirements.txt" in a for a in instructions["RUN"])
    users = instructions.get("USER", [])
    assert users, "the image must switch to a non-root user"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    (healthcheck,) = instructions["HEALTHCHECK"]
    assert "/health" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    cmd = instructions["CMD"][-1]
    assert "docker-entrypoint.sh" in cmd
    assert instructions["EXPOSE"] == ["8000"]


def test_dockerfile_healthcheck_command_is_valid_python(dockerfile):
    (healthcheck,) = [a for i, a in dockerfile if i == "HEALTHCHECK"]
    exec_form = healthcheck[healthcheck.index("CMD") + 3:].strip()
    argv = ast.literal_eval(exec_form)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


def test_entrypoint_runs_init_db_then_waitress(dockerfile):
    text = ENTRYPOINT.read_text()
    assert ENTRYPOINT.stat().st_mode & 0o111, "entrypoint must be executable"
    assert text.startswith("#!/bin/sh")
    init = text.index("flask --app archiver init-db")
    serve = text.index("exec python -m archiver.serve")  # waitress with the body limit (archiver/serve.py)
    assert init < serve
    words = shlex.split(text[serve:].splitlines()[0])
    assert words[words.index("--host") + 1] == "0.0.0.0"
    assert (ROOT / "wsgi.py").read_text().count("app = create_app()") == 1


@pytest.mark.parametrize("init_db_status, tries, served", [(0, 1, True), (1, 3, False), (3, 1, False)])
def test_entrypoint_retries_init_db_unless_it_refused(tmp_path, init_db_status, tries, served):
    """A database still starting (init-db exits 1) is retried for DB_WAIT_SECONDS; a database init-db
    refused (exit 3: not recognised, nothing changed) stops the container at once."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for name, status in (("flask", init_db_status), ("python", 0), ("sleep", 0)):  # python -m archiver.serve
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit {status}\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DB_WAIT_SECONDS": "3"}
    done = subprocess.run(["/bin/sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("flask")] == ["flask --app archiver init-db"] * tries
    assert any(c.startswith("python -m archiver.serve") for c in calls) is served
    assert done.returncode == (0 if served else init_db_status), done.stderr


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "instance/*", "*.db"):
        assert entry in ignored


def test_container_stop_timeout_covers_the_graceful_shutdown(compose, dockerfile):
    """docker stop sends SIGTERM, then SIGKILL after the grace period: it must outlast the time the
    service gives running jobs to finish their batch (SHUTDOWN_TIMEOUT_SECONDS) plus waitress' close."""
    from config import SETTINGS_BY_NAME
    service = compose["services"]["archiver"]
    assert service["stop_signal"] == "SIGTERM"
    grace = service["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) >= SETTINGS_BY_NAME["SHUTDOWN_TIMEOUT_SECONDS"].default + 10
    assert ("STOPSIGNAL", "SIGTERM") in dockerfile
    assert "SHUTDOWN_TIMEOUT_SECONDS" in service["environment"]
