"""Per-request metrics kept by each answering thread and summed at a scrape."""

import threading

from prometheus_client import generate_latest

from fingerd.metrics import DURATION_BUCKETS, Metrics, bucket_of


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def count(counts, service, outcome, seconds, sent, kind):
    """Count one request in the calling thread's tally, as the serving loop's _finish does."""
    tally = counts.this_thread.tally
    tally.requests[service, outcome, kind, bucket_of(seconds)] += 1
    tally.seconds[service] += seconds
    tally.sent[service] += sent


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
            count(counts, "finger", "found", DURATION_BUCKETS[(i + offset) % 3], 10, "user")

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
    count(metrics.requests, "setter", "ok", 0.001, 4, "set")
    assert value(metrics, "fingerd_request_duration_seconds_bucket", service="setter",
                 le="0.0005") == 0
    assert value(metrics, "fingerd_request_duration_seconds_bucket", service="setter",
                 le="0.001") == 1
    assert value(metrics, "fingerd_request_duration_seconds_sum", service="setter") == 0.001
    assert value(metrics, "fingerd_queries_total", kind="user") == 0
    assert b'fingerd_requests_total{outcome="ok",service="setter"} 1.0' in \
        generate_latest(metrics.registry)


def test_each_thread_counts_into_a_tally_of_its_own():
    counts = Metrics().requests
    here = counts.this_thread.tally
    assert counts.this_thread.tally is here
    there = []
    other = threading.Thread(target=lambda: there.append(counts.this_thread.tally))
    other.start()
    other.join(10)
    assert there and there[0] is not here


def test_scrapes_while_threads_count_new_label_sets_see_whole_counts():
    """A thread's tally gains a key with each label set it counts first; a scrape
    meanwhile never fails, and never sees a count go down. (Here the threads count
    a new kind each time, so that their tallies grow all along.)"""
    metrics = Metrics()
    counts = metrics.requests
    per_thread = 100000

    def answer(offset):
        for i in range(per_thread):
            count(counts, "finger", "found", DURATION_BUCKETS[(i + offset) % 3], 1,
                  f"kind {offset} {i}")

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    seen = []
    while any(t.is_alive() for t in threads):
        generate_latest(metrics.registry)
        seen.append(value(metrics, "fingerd_request_duration_seconds_count", service="finger"))
    for t in threads:
        t.join(10)
    assert seen == sorted(seen)
    assert value(metrics, "fingerd_requests_total", service="finger", outcome="found") == \
        counts.answered() == 2 * per_thread
