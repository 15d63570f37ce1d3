"""Per-request metrics kept by each answering thread and summed at a scrape."""

import threading

from prometheus_client import generate_latest

from fingerd.metrics import DURATION_BUCKETS, Metrics


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_every_label_set_is_shown_at_zero():
    metrics = Metrics()
    assert value(metrics, "fingerd_requests_total", service="setter", outcome="error") == 0
    assert value(metrics, "fingerd_queries_total", kind="forwarding") == 0
    assert value(metrics, "fingerd_request_duration_seconds_bucket", service="finger",
                 le="+Inf") == 0
    assert value(metrics, "fingerd_answer_bytes_total", service="setter") == 0


def test_counts_from_many_threads_add_up():
    metrics = Metrics()
    counts = metrics.requests
    per_thread = 2000

    def answer(offset):
        for i in range(per_thread):
            counts.record("finger", "found", DURATION_BUCKETS[(i + offset) % 3], 10, "user")

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    total = 4 * per_thread
    assert value(metrics, "fingerd_requests_total", service="finger", outcome="found") == total
    assert value(metrics, "fingerd_queries_total", kind="user") == total
    assert value(metrics, "fingerd_answer_bytes_total", service="finger") == 10 * total
    assert value(metrics, "fingerd_request_duration_seconds_count", service="finger") == total
    buckets = [value(metrics, "fingerd_request_duration_seconds_bucket", service="finger",
                     le=str(bound)) for bound in DURATION_BUCKETS[:3]]
    at = [sum((i + offset) % 3 == b for offset in range(4) for i in range(per_thread))
          for b in range(3)]
    assert buckets == [at[0], at[0] + at[1], total]


def test_a_value_on_a_bucket_bound_is_counted_in_that_bucket():
    metrics = Metrics()
    metrics.requests.record("setter", "ok", 0.001, 4, "set")
    assert value(metrics, "fingerd_request_duration_seconds_bucket", service="setter",
                 le="0.0005") == 0
    assert value(metrics, "fingerd_request_duration_seconds_bucket", service="setter",
                 le="0.001") == 1
    assert value(metrics, "fingerd_request_duration_seconds_sum", service="setter") == 0.001
    assert value(metrics, "fingerd_queries_total", kind="user") == 0
    assert b'fingerd_requests_total{outcome="ok",service="setter"} 1.0' in \
        generate_latest(metrics.registry)
