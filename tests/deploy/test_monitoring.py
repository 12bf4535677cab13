"""deploy/prometheus and deploy/grafana against the proxy they watch.

Every metric and label the recording rules, the alerts, their unit tests and the dashboard use
is one a running proxy exports (read from its /metrics after real traffic); promtool checks the
scrape config and the rules and runs the alerts' unit tests; the dashboard and its provisioning
are well formed and cover what the proxy exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from llm_proxy.app import create_app
from llm_proxy.config.model import TracingSettings
from llm_proxy.keys import METRICS, STORE
from llm_proxy.observe.tracing.settings import resolve
from llm_proxy.reload import reload_store
from tests.helpers import Upstream, make_config, provider, serve

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA / "dashboards" / "llm-proxy.json"
# Where the provisioning expects the dashboards of deploy/grafana/dashboards (copied there, or
# mounted as deploy/docker-compose.yml does).
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"

# Labels Prometheus puts on every series it scrapes (target labels), and the series it makes
# itself for every target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = {"up": frozenset[str]()}
# Grafana's own variables, replaced by durations before promtool reads an expression.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
DASHBOARD_VARIABLES = ("datasource", "instance", "provider", "model", "api_key_name", "team")
# What the seed README's dashboard list and issue 16 ask for, by panel title.
REQUIRED_PANELS = (
    "Request rate",
    "P50 / P95 / P99",
    "Time to first token",
    "Tokens/s by model",
    "Tokens/s by provider",
    "Tokens/s by API key",
    "Tokens/s by team",
    "Cost by team",
    "status code",
    "Provider load share",
    "Provider health",
    "Active requests",
    "Rate-limited",
    "Cost",
    "Config version",
)
SEVERITIES = frozenset({"critical", "warning", "info"})
# Where an alert's description sends the operator: the detailed health, the admin API, logs.
RUNBOOK_HINTS = ("/health/detailed", "/admin/", "logs", "journalctl", "log line")


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


# ------------------------------------------------------------------------------------------
# What the proxy exports: sample name -> label names, after traffic that makes every family
# have samples (tokens, cost, streams, a dead provider, a 429, a rejected reload, a request log).


@dataclass(frozen=True, slots=True)
class Exported:
    labels: dict[str, frozenset[str]]  # sample name -> its label names
    family_of: dict[str, str]  # sample name -> family name
    families: frozenset[str]


async def exported_metrics(upstream: Upstream, dead_port: int, tmp_path: Path) -> Exported:
    config = make_config(
        provider("alpha", upstream.api_base, {"m": None}),
        provider("dead", f"http://127.0.0.1:{dead_port}/v1", {"dead": None}),
        teams=[{"name": "search"}],
        master_keys=[
            {"name": "team", "key": "sk-team-0123", "team": "search"},
            {
                "name": "limited",
                "key": "sk-limited-0123",
                "rate_limit": {"requests_per_second": 0.01, "burst_size": 1},
            },
        ],
        pricing={"m": {"input_per_mtok": 1, "output_per_mtok": 2}},
        rate_limit_backend=f"redis://127.0.0.1:{dead_port}/0",  # down: the gauge reads 0
        cache={"backend": "redis"},  # the same Redis, down: bypasses and errors
        request_log={"jsonl_path": str(tmp_path / "requests.jsonl")},
        # The dead provider's model falls back to `m`; the header picks a rule.
        routing={
            "fallbacks": {"dead": ["m"]},
            "rules": [{"name": "canary", "match": {"header": {"x-canary": "1"}}, "model": "m"}],
        },
    )
    # Tracing to a collector that is down: its span and failure counters exist.
    tracing = resolve(
        TracingSettings(traces_endpoint=f"http://127.0.0.1:{dead_port}/v1/traces"), {}
    )
    app = create_app(config, tracing=tracing)
    team = {"Authorization": "Bearer sk-team-0123"}
    limited = {"Authorization": "Bearer sk-limited-0123"}
    async with serve(app) as url, aiohttp.ClientSession() as http:
        for body, headers in (
            ({"model": "m"}, team),
            ({"model": "m", "stream": True}, team),
            ({"model": "dead"}, team),
            ({"model": "m"}, limited),
            ({"model": "m"}, limited),  # 429
            ({"model": "m"}, {**team, "x-canary": "1"}),
        ):
            async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()
        assert not reload_store(app[STORE], tmp_path / "missing.yaml", app[METRICS])
        async with http.get(url + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    labels: dict[str, set[str]] = {}
    family_of: dict[str, str] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            labels.setdefault(s.name, set()).update(s.labels)
            family_of[s.name] = family.name
    empty = families - set(family_of.values())
    assert not empty, f"no samples for {sorted(empty)}: make the traffic above produce them"
    return Exported(
        {name: frozenset(names) for name, names in labels.items()},
        family_of,
        frozenset(families),
    )


@pytest.fixture
async def exported(upstream: Upstream, unused_tcp_port: int, tmp_path: Path) -> Exported:
    return await exported_metrics(upstream, unused_tcp_port, tmp_path)


# ------------------------------------------------------------------------------------------
# A small PromQL reader: enough to find selectors (metric, label matchers) and the labels of
# `by`/`without`/`on`/`ignoring`/`group_*` clauses, with the token range each one covers.

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d[\w.]*)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
AGGREGATORS = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
    | {"quantile", "count_values"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str
    labels: frozenset[str]


@dataclass(slots=True)
class Grouping:
    keyword: str
    labels: list[str]
    selectors: list[Selector] = field(default_factory=list)  # what the clause applies to


@dataclass(slots=True)
class Query:
    selectors: list[Selector]
    groupings: list[Grouping]


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def closing(toks: list[tuple[str, str]], i: int) -> int:
    """Index of the `)` matching the `(` at `i`."""
    depth = 0
    for j in range(i, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[j][1], 0) if toks[j][0] == "op" else 0
        if depth == 0:
            return j
    raise ValueError("unbalanced parentheses")


def parse(expr: str) -> Query:
    toks = tokens(expr)
    at: list[tuple[int, Selector]] = []  # (token index, selector)
    groupings: list[tuple[Grouping, int, int]] = []  # clause, range its selectors come from
    aggregations: list[tuple[int, int, int]] = []  # (aggregator index, arg start, arg end)
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in GROUPING and nxt == "(":
            end = closing(toks, i + 1)
            labels = [t for k, t in toks[i + 2 : end] if k == "ident"]
            groupings.append((Grouping(text, labels), i, end))
            i = end + 1
        elif kind == "ident" and text in AGGREGATORS and nxt in ("(", "by", "without"):
            start = i + 1 if nxt == "(" else closing(toks, i + 2) + 1
            aggregations.append((i, start, closing(toks, start)))
            i += 1
        elif kind == "ident" and (text in KEYWORDS or nxt == "("):
            i += 1  # a keyword or a function
        elif (kind == "ident") or (kind == "op" and text == "{"):
            metric = text if kind == "ident" else ""
            j = i + 1 if kind == "ident" else i
            names: set[str] = set()
            if j < len(toks) and toks[j][1] == "{":
                while toks[j][1] != "}":
                    j += 1
                    if toks[j][0] == "ident":
                        names.add(toks[j][1])
                        if toks[j][1] == "__name__":
                            metric = toks[j + 2][1].strip("\"'`")
                        j += 2  # operator and value
            at.append((i, Selector(metric, frozenset(names - {"__name__"}))))
            i = max(j, i + 1) if kind == "ident" else j + 1
        else:
            i += 1
    query = Query([s for _, s in at], [])
    for clause, start, end in groupings:
        if clause.keyword in ("by", "without"):
            # The aggregation it modifies: the one whose argument ends right before it or
            # begins right after it.
            agg = next(a for a in aggregations if a[2] == start - 1 or a[1] == end + 1)
            clause.selectors = [s for n, s in at if agg[1] < n < agg[2]]
        else:
            clause.selectors = [s for _, s in at]
        query.groupings.append(clause)
    return query


def test_parse_reads_selectors_and_groupings() -> None:
    q = parse(
        'sum by (job, le) (rate(a_bucket{x=~"1|2",y!="z"}[5m]))'
        " / on (job) group_left sum(b) without (k) > 0.5 and c offset 15m"
    )
    assert [s.metric for s in q.selectors] == ["a_bucket", "b", "c"]
    assert q.selectors[0].labels == {"x", "y"}
    (by, on, without) = q.groupings
    assert (by.keyword, by.labels, [s.metric for s in by.selectors]) == (
        "by",
        ["job", "le"],
        ["a_bucket"],
    )
    assert (on.keyword, on.labels, len(on.selectors)) == ("on", ["job"], 3)
    assert (without.labels, [s.metric for s in without.selectors]) == (["k"], ["b"])
    bare = parse('count({__name__="up", job="x"})')
    assert bare.selectors == [Selector("up", frozenset({"job"}))]


# ------------------------------------------------------------------------------------------
# The files: every PromQL expression they hold, with where it comes from.


def rules() -> list[dict[str, Any]]:
    doc = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed panels included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def grafana_to_promql(expr: str) -> str:
    for variable, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, duration)
    return expr


def dashboard_exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and template variable query."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"])
    for note in board["annotations"]["list"]:
        if "expr" in note:
            yield f"annotation {note['name']!r}", grafana_to_promql(note["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["definition"])
            assert m, variable["definition"]
            selector, label = m.groups()
            # label_values(selector, label): a grouping by `label` over that selector
            yield f"variable ${variable['name']}", f"count by ({label}) ({selector})"


def rule_exprs() -> Iterator[tuple[str, str]]:
    for rule in rules():
        yield f"rule {rule.get('alert') or rule['record']}", rule["expr"]


def recorded_labels() -> dict[str, frozenset[str]]:
    """Label names of each recording rule's series: what its groupings keep (not `le` once a
    histogram_quantile has used it), and those of the recorded series it reads."""
    out: dict[str, frozenset[str]] = {}
    for rule in rules():
        if "record" in rule:
            q = parse(rule["expr"])
            names = {label for g in q.groupings if g.keyword == "by" for label in g.labels}
            for s in q.selectors:
                names |= out.get(s.metric, frozenset())
            if "histogram_quantile" in rule["expr"]:
                names.discard("le")
            out[rule["record"]] = frozenset(names)
    return out


def problems(exprs: Iterator[tuple[str, str]], exported: Exported) -> list[str]:
    """Metrics the proxy does not export and labels its metrics do not have."""
    recorded = recorded_labels()

    def labels_of(metric: str) -> frozenset[str] | None:
        if metric in recorded:
            return recorded[metric]
        if metric in PROMETHEUS_SERIES:
            return PROMETHEUS_SERIES[metric] | TARGET_LABELS
        if metric in exported.labels:
            return exported.labels[metric] | TARGET_LABELS
        return None

    found = []
    for where, expr in exprs:
        q = parse(expr)
        for s in q.selectors:
            have = labels_of(s.metric)
            if have is None:
                found.append(f"{where}: {s.metric} is not exported")
            elif not s.labels <= have:
                found.append(f"{where}: {s.metric} has no label {sorted(s.labels - have)}")
        for g in q.groupings:
            sets = [labels_of(s.metric) or frozenset() for s in g.selectors]
            for label in g.labels:
                on = [label in have for have in sets]
                if not (all(on) if g.keyword in ("by", "without") else any(on)):
                    found.append(f"{where}: {g.keyword} ({label}) on metrics without it")
    return found


# ------------------------------------------------------------------------------------------
# (a) Every metric and label used is one the proxy exports.


async def test_rules_use_only_exported_metrics_and_labels(exported: Exported) -> None:
    assert problems(rule_exprs(), exported) == []


async def test_dashboard_uses_only_exported_metrics_and_labels(exported: Exported) -> None:
    assert problems(dashboard_exprs(dashboard()), exported) == []


async def test_dashboard_shows_every_exported_metric(exported: Exported) -> None:
    used = {
        exported.family_of[s.metric]
        for _, expr in dashboard_exprs(dashboard())
        for s in parse(expr).selectors
        if s.metric in exported.family_of
    }
    assert sorted(exported.families - used) == []


async def test_alert_tests_series_look_like_the_proxys(exported: Exported) -> None:
    """The synthetic series of alerts_test.yml carry exactly the labels the proxy's have (plus
    job and instance), so the alerts are tested against series shaped like real ones."""
    doc = load_yaml(PROMETHEUS / "alerts_test.yml")
    wrong = []
    for case in doc["tests"]:
        for series in case["input_series"]:
            s = parse(series["series"]).selectors[0]
            want = PROMETHEUS_SERIES.get(s.metric, exported.labels.get(s.metric))
            if want is None:
                wrong.append(f"{series['series']}: not exported")
            elif s.labels - TARGET_LABELS != want:
                wrong.append(f"{series['series']}: labels other than {sorted(want)}")
    assert wrong == []


# ------------------------------------------------------------------------------------------
# The alerts: what each one carries, and that its unit tests see it fire and stay quiet.


def test_every_alert_has_for_severity_and_a_runbook_hint() -> None:
    for name, rule in alerts().items():
        assert name.startswith("LLMProxy"), name
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        description = annotations["description"].lower()
        assert any(hint in description for hint in RUNBOOK_HINTS), name


def raw_metrics(expr: str, recorded: dict[str, str]) -> set[str]:
    """The metrics an expression reads, through the recording rules it uses."""
    out = set()
    for s in parse(expr).selectors:
        out |= raw_metrics(recorded[s.metric], recorded) if s.metric in recorded else {s.metric}
    return out


def test_required_alerts_exist() -> None:
    # error rate, provider ejected, p99 latency, TTFT, reload failures, Redis, record drops
    expected = {
        "LLMProxyHighErrorRate": "llm_proxy_requests_total",
        "LLMProxyProviderEjected": "llm_proxy_provider_health",
        "LLMProxyHighLatencyP99": "llm_proxy_request_duration_seconds_bucket",
        "LLMProxySlowTimeToFirstToken": "llm_proxy_time_to_first_token_seconds_bucket",
        "LLMProxyConfigReloadFailed": "llm_proxy_config_reloads_total",
        "LLMProxyRateLimitBackendDown": "llm_proxy_rate_limit_backend_up",
        "LLMProxyRequestLogDropping": "llm_proxy_request_log_dropped_total",
    }
    found = alerts()
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    for name, metric in expected.items():
        assert metric in raw_metrics(found[name]["expr"], recorded), name


def test_every_alert_is_tested_firing_and_quiet() -> None:
    doc = load_yaml(PROMETHEUS / "alerts_test.yml")
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert sorted(set(alerts()) - fires) == []
    assert sorted(set(alerts()) - quiet) == []


# ------------------------------------------------------------------------------------------
# (b) promtool: the scrape config, the rules, the alerts' unit tests, the dashboard's PromQL.

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)",
)


def promtool(*args: str | Path) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def scrape_config_copy(tmp_path: Path, *, kubernetes: bool) -> Path:
    """prometheus.yml and its rule file in `tmp_path`, its token file at a path of ours (the
    shipped one names /etc/prometheus/...), with the commented Kubernetes example switched on
    when `kubernetes`."""
    text = (PROMETHEUS / "prometheus.yml").read_text()
    begin = text.index("  # --- kubernetes_sd example (begin) ---\n")
    end = text.index("  # --- kubernetes_sd example (end) ---\n")
    if kubernetes:
        example = re.sub(r"^  # ?", "  ", text[begin:end].split("\n", 1)[1], flags=re.MULTILINE)
        assert "kubernetes_sd_configs" in example
        text = text[:begin] + example + text[end:]
    token = tmp_path / "token"
    token.write_text("metrics-token\n")
    text = re.sub(r"credentials_file: .*", f"credentials_file: {token}", text)
    (tmp_path / "prometheus.yml").write_text(text)
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    return tmp_path / "prometheus.yml"


@needs_promtool
def test_promtool_check_config(tmp_path: Path) -> None:
    """The scrape config as shipped, then in full: its rule file found, its token file read."""
    promtool("check", "config", "--syntax-only", PROMETHEUS / "prometheus.yml")
    out = promtool("check", "config", scrape_config_copy(tmp_path, kubernetes=False))
    assert "alerts.yml" in out and "rules found" in out


@needs_promtool
def test_promtool_check_compose_config() -> None:
    out = promtool("check", "config", PROMETHEUS / "prometheus-compose.yml")
    assert "alerts.yml" in out and "rules found" in out


@needs_promtool
def test_promtool_check_config_kubernetes_example(tmp_path: Path) -> None:
    """The commented Kubernetes job, switched on. Debian's promtool is built without Kubernetes
    discovery: there the job is checked with static targets in place of its discovery."""
    assert PROMTOOL is not None
    path = scrape_config_copy(tmp_path, kubernetes=True)
    job = load_yaml(path)["scrape_configs"][-1]
    assert job["job_name"].startswith("llm-proxy")
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        static = '    static_configs:\n      - targets: ["127.0.0.1:18000"]\n'
        text = re.sub(r"    kubernetes_sd_configs:\n(?:      .*\n)+", static, path.read_text())
        path.write_text(text)
        promtool("check", "config", path)
    else:
        assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    promtool("check", "rules", PROMETHEUS / "alerts.yml")


@needs_promtool
def test_promtool_alert_unit_tests() -> None:
    promtool("test", "rules", PROMETHEUS / "alerts_test.yml")


@needs_promtool
def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every dashboard query, given to promtool as a recording rule: Prometheus parses it."""
    records = [
        {"record": f"dashboard:query_{n}", "expr": expr}
        for n, (_, expr) in enumerate(dashboard_exprs(dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": records}]}))
    promtool("check", "rules", path)


# ------------------------------------------------------------------------------------------
# (c) The dashboard and its provisioning.


def test_dashboard_panels_are_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "llm-proxy" and board["title"]
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']!r} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":  # a row only groups panels: no query of its own
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource and target["expr"].strip(), panel["title"]


def test_dashboard_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(DASHBOARD_VARIABLES) <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in DASHBOARD_VARIABLES[1:]:
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*", name
    used = set()
    for _, expr in dashboard_exprs(board):
        used |= set(re.findall(r"\$\{?(\w+)", expr))
    assert used <= set(variables), sorted(used - set(variables))
    # every filter is offered on the panels whose metric has its label
    for name in DASHBOARD_VARIABLES[1:]:
        assert name in used, name


def test_dashboard_has_the_listed_panels() -> None:
    titles = [p["title"] for p in panels(dashboard()) if p["type"] != "row"]
    missing = [want for want in REQUIRED_PANELS if not any(want in t for t in titles)]
    assert missing == []


def test_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"].endswith(":9090")
    # $__rate_interval is at least four scrape intervals: Grafana must know the scrape interval.
    for config in ("prometheus.yml", "prometheus-compose.yml"):
        scrape = load_yaml(PROMETHEUS / config)["global"]["scrape_interval"]
        assert source["jsonData"]["timeInterval"] == scrape, config

    text = (GRAFANA / "provisioning" / "dashboards" / "llm-proxy.yml").read_text()
    dashboards = YAML(typ="safe").load(text)
    assert dashboards["apiVersion"] == 1
    (files,) = dashboards["providers"]
    assert files["type"] == "file"
    assert files["options"]["path"] == DASHBOARDS_PATH
    # its install note says which repository directory goes there, and that directory exists
    assert f"deploy/grafana/dashboards/*.json\n# to {DASHBOARDS_PATH}/" in text
    assert sorted(p.name for p in DASHBOARD_FILE.parent.glob("*.json")) == ["llm-proxy.json"]
