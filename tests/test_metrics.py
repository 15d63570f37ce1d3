"""The metrics endpoint (docs/guide.md, "Metrics and logs"), checked by Prometheus's own
tools."""

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime

import pytest

from tests.support.markers import needs_tool
from tests.support.net import exchange
from tests.support.polling import wait_until

REQUIRED_FAMILIES = {
    "fingerd_requests_total": "counter",
    "fingerd_request_duration_seconds": "histogram",
    "fingerd_connections_active": "gauge",
    "fingerd_connections_rejected_total": "counter",
    "fingerd_users": "gauge",
    "fingerd_reloads_total": "counter",
    "fingerd_last_reload_success_timestamp_seconds": "gauge",
    "fingerd_worker_restarts_total": "counter",
}


def scrape(d, path="/metrics"):
    return exchange(d.metrics_port, f"GET {path} HTTP/1.0\r\n\r\n".encode())


def body(d):
    reply = scrape(d)
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    return reply.split(b"\r\n\r\n", 1)[1].decode()


def types(text):
    found = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            found[name] = kind
    return found


def samples(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_every_contract_family_is_exported_with_its_type(daemon):
    exported = types(body(daemon))
    for name, kind in REQUIRED_FAMILIES.items():
        assert exported.get(name) == kind, name


def test_no_created_series_clutter_the_output(shared_daemon):
    assert "_created" not in body(shared_daemon)


def test_scrapes_are_not_counted_as_a_service(shared_daemon):
    body(shared_daemon)
    assert 'service="metrics"' not in body(shared_daemon)


def test_every_family_has_help(shared_daemon):
    text = body(shared_daemon)
    for family in types(text):
        assert f"# HELP {family} " in text


def test_label_values_never_carry_names_or_addresses(daemon):
    daemon.finger(b"alice\r\n")
    daemon.finger(b"mallory\r\n")
    daemon.setter(b"carol\r\nhi\r\n")
    for line in samples(body(daemon)):
        assert "alice" not in line and "mallory" not in line and "carol" not in line
        assert "127.0.0.1" not in line


def test_query_kinds_and_answer_bytes_are_counted(daemon):
    daemon.finger(b"alice\r\n")
    daemon.finger(b"/W alice\r\n")
    daemon.finger(b"\r\n")
    daemon.finger(b"a@b\r\n")
    for kind in ("user", "verbose", "list", "forwarding"):
        assert daemon.metric("fingerd_queries_total", kind=kind) == 1
    assert daemon.metric("fingerd_answer_bytes_total", service="finger") == \
        len(b"Happy and well\r\n") + len(b"Login: alice\r\nStatus: Happy and well\r\n") + \
        len(b"Finger online user list denied\r\n") + len(b"Finger forwarding service denied\r\n")


def test_pool_and_process_metrics(shared_daemon):
    assert shared_daemon.metric("fingerd_pool_queue_depth") == 0
    assert shared_daemon.metric("fingerd_pool_threads_busy") == 0, "a scrape is not pool work"
    assert shared_daemon.metric("process_cpu_seconds_total") >= 0
    assert shared_daemon.metric("process_resident_memory_bytes") > 0
    assert shared_daemon.metric("fingerd_parent_process_cpu_seconds_total") > 0
    assert shared_daemon.metric("fingerd_build_info",
                                version=__import__("fingerd").__version__) == 1


def test_other_paths_are_not_found_and_other_methods_not_allowed(shared_daemon):
    assert scrape(shared_daemon, "/").startswith(b"HTTP/1.0 404 ")
    assert scrape(shared_daemon, "/metricsx").startswith(b"HTTP/1.0 404 ")
    assert b"fingerd_" not in scrape(shared_daemon, "/other")
    assert exchange(shared_daemon.metrics_port, b"POST /metrics HTTP/1.0\r\n\r\n").startswith(
        b"HTTP/1.0 405 ")
    assert exchange(shared_daemon.metrics_port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400 ")


def test_head_gets_a_scrape_s_head_and_other_methods_are_told_get_and_head(shared_daemon):
    head = exchange(shared_daemon.metrics_port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
    for method in (b"OPTIONS", b"POST"):
        refused = exchange(shared_daemon.metrics_port, method + b" /metrics HTTP/1.0\r\n\r\n")
        assert refused.startswith(b"HTTP/1.0 405 ") and b"\r\nAllow: GET, HEAD\r\n" in refused


def test_query_string_is_ignored(shared_daemon):
    assert scrape(shared_daemon, "/metrics?x=1").startswith(b"HTTP/1.0 200 OK")


@needs_tool("promtool", "prometheus")
def test_promtool_finds_nothing_to_report(daemon):
    daemon.finger(b"alice\r\n")
    daemon.setter(b"alice\r\nx\r\n")
    result = subprocess.run(["promtool", "check", "metrics"], input=body(daemon).encode(),
                            capture_output=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == b"" and result.stderr == b""


@pytest.fixture
def prometheus(daemon, public_dir, ports):
    """A real Prometheus server scraping the daemon every second; stopped by its pid."""
    port = ports.take()
    config = os.path.join(public_dir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: fingerd\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{daemon.metrics_port}']\n")
    log = open(os.path.join(public_dir, "prometheus.log"), "wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={os.path.join(public_dir, 'tsdb')}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def query_prometheus(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data = json.load(response)
    except OSError:
        return None
    result = data.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


@needs_tool("prometheus", "prometheus")
def test_a_real_prometheus_sees_requests_rise(daemon, prometheus):
    expr = 'sum(fingerd_requests_total{service="finger"})'
    before = wait_until(lambda: query_prometheus(prometheus, expr) is not None and
                        [query_prometheus(prometheus, expr)], timeout=60,
                        what="Prometheus's first scrape")[0]
    for _ in range(5):
        daemon.finger(b"alice\r\n")
    wait_until(lambda: (query_prometheus(prometheus, expr) or 0) >= before + 5, timeout=60,
               what="Prometheus to see the new requests")
    assert query_prometheus(prometheus, 'up{job="fingerd"}') == 1


def test_a_head_over_8_kib_is_answered_431(shared_daemon):
    reply = exchange(shared_daemon.metrics_port, b"GET /metrics HTTP/1.0\r\nX: " + b"x" * 9000
                     + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 431 ")


def test_a_request_line_over_8_kib_is_431_and_to_head_without_a_body(shared_daemon):
    """The line never ends within the bound, but what came of it began a HEAD."""
    get = exchange(shared_daemon.metrics_port, b"GET /metrics" + b"x" * 9000)
    head = exchange(shared_daemon.metrics_port, b"HEAD /metrics" + b"x" * 9000)
    assert get.startswith(b"HTTP/1.0 431 ") and get.endswith(b"\r\n\r\nrequest head over 8 KiB\n")
    assert head.startswith(b"HTTP/1.0 431 ") and head.endswith(b"\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("request_head", [
    b"GET /metrics HTTP/1.0\r\n\r\n", b"HEAD /metrics HTTP/1.0\r\n\r\n",
    b"GET /other HTTP/1.0\r\n\r\n", b"POST /metrics HTTP/1.0\r\n\r\n", b"garbage\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\nX: " + b"x" * 9000 + b"\r\n\r\n",
], ids=["200", "head", "404", "405", "400", "431"])
def test_every_answer_carries_the_date_it_was_sent(shared_daemon, request_head):
    """RFC 9110 6.6.1: an origin server with a clock sends Date, as the web directory does."""
    before = int(time.time())
    head = exchange(shared_daemon.metrics_port, request_head).partition(b"\r\n\r\n")[0]
    after = time.time()
    dates = [line[6:] for line in head.split(b"\r\n") if line.startswith(b"Date: ")]
    assert len(dates) == 1, head
    assert before <= parsedate_to_datetime(dates[0].decode()).timestamp() <= after
