"""The loop metrics are exposed exactly as prometheus_client's own metrics would be, for the same
observations: a scraper, a dashboard or an alert rule cannot tell them apart."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from anygate.loop_metrics import LoopCounter, LoopGauge, LoopHistogram
from anygate.telemetry import LATENCY_BUCKETS, Metrics

CREATED = re.compile(r"^(\S+_created\{[^}]*\}) \S+$", re.MULTILINE)
OBSERVATIONS = [0.0004, 0.001, 0.0011, 0.003, 0.05, 0.7, 2.5, 9.9, 31.0, 500.0, 0.02, 0.02]


def exposition(*collectors: object) -> str:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def without_created_values(text: str) -> str:
    """The exposition with each ``_created`` timestamp blanked (the two metrics were made moments apart)."""
    return CREATED.sub(r"\1 <created>", text)


def test_a_counter_reads_as_prometheus_clients_counter() -> None:
    theirs_registry = CollectorRegistry()
    theirs = Counter("anygate_requests_total", "Requests.", ("route", "status"), registry=theirs_registry)
    ours = LoopCounter("anygate_requests", "Requests.", ("route", "status"))
    for route, status, amount in [
        ("chat", "200", 1),
        ("chat", "200", 1),
        ("embeddings", "429", 1),
        ("chat", "500", 2.5),
    ]:
        theirs.labels(route, status).inc(amount)
        ours.inc((route, status), amount)

    expected = without_created_values(generate_latest(theirs_registry).decode())
    assert without_created_values(exposition(ours)) == expected
    assert ours.value(("chat", "200")) == 2 and ours.value(("chat", "404")) == 0


def test_a_histogram_reads_as_prometheus_clients_histogram_bucket_by_bucket() -> None:
    theirs_registry = CollectorRegistry()
    theirs = Histogram(
        "anygate_request_duration_seconds", "Time.", ("model",), buckets=LATENCY_BUCKETS, registry=theirs_registry
    )
    ours = LoopHistogram("anygate_request_duration_seconds", "Time.", ("model",), LATENCY_BUCKETS)
    for index, seconds in enumerate(OBSERVATIONS):
        model = "a" if index % 3 else "b"
        theirs.labels(model).observe(seconds)
        ours.observe((model,), seconds)

    text = exposition(ours)
    assert without_created_values(text) == without_created_values(generate_latest(theirs_registry).decode())
    # A value on a bound counts in that bound's bucket (le: less than or equal): 0.001 is "a"'s first.
    assert 'anygate_request_duration_seconds_bucket{le="0.001",model="a"} 1.0' in text
    assert ours.count(("a",)) + ours.count(("b",)) == len(OBSERVATIONS)


def test_a_gauge_reads_as_prometheus_clients_gauge() -> None:
    theirs_registry = CollectorRegistry()
    theirs = Gauge("anygate_budget_remaining", "Left.", ("scope", "unit"), registry=theirs_registry)
    ours = LoopGauge("anygate_budget_remaining", "Left.", ("scope", "unit"))
    for scope, unit, left in [("key:k1", "usd", 4.5), ("key:k1", "tokens", 900.0), ("key:k1", "usd", 4.25)]:
        theirs.labels(scope, unit).set(left)
        ours.set((scope, unit), left)

    assert exposition(ours) == generate_latest(theirs_registry).decode()


def test_counters_never_drop_a_count_however_many_label_sets_there_are() -> None:
    """Spend past a thousand keys goes to ``other`` (``Metrics.key_label``), and every model's spend is kept:
    no label set is ever refused a count (only a gauge may be given a limit)."""
    metrics = Metrics()
    for key in range(1_000):
        for model in range(12):
            metrics.count_spend("openai", f"model-{model}", f"key-{key}", 0.5)
    metrics.count_spend("openai", "a-new-model", "key-1", 5.0)
    metrics.count_spend("openai", "a-new-model", "one-key-too-many", 2.0)

    assert metrics.spend.value(("openai", "a-new-model", "key-1")) == 5.0
    assert metrics.spend.value(("openai", "a-new-model", "other")) == 2.0
    histogram = LoopHistogram("many_seconds", "Many.", ("n",), LATENCY_BUCKETS)
    for n in range(12_000):
        histogram.observe((str(n),), 0.1)
    assert histogram.count(("11999",)) == 1


def test_a_gauge_given_a_limit_keeps_that_many_label_sets() -> None:
    gauge = LoopGauge("few", "Few.", ("n",), limit=2)
    for n in range(4):
        gauge.set((str(n),), n)
    gauge.set(("1",), 10)
    assert exposition(gauge).count("few{") == 2 and 'few{n="1"} 10.0' in exposition(gauge)


def test_without_created_series_neither_kind_shows_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PROMETHEUS_DISABLE_CREATED_SERIES`` (read by prometheus_client into ``_use_created``) holds for the
    loop metrics as for prometheus_client's own."""
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    theirs_registry = CollectorRegistry()
    Counter("c_total", "C.", ("a",), registry=theirs_registry).labels("x").inc()
    Histogram("h_seconds", "H.", ("a",), buckets=LATENCY_BUCKETS, registry=theirs_registry).labels("x").observe(0.2)
    counter, histogram = LoopCounter("c", "C.", ("a",)), LoopHistogram("h_seconds", "H.", ("a",), LATENCY_BUCKETS)
    counter.inc(("x",))
    histogram.observe(("x",), 0.2)

    ours = exposition(counter, histogram)
    assert "_created" not in ours
    assert ours == generate_latest(theirs_registry).decode()


def test_a_scrape_from_another_thread_while_the_loop_counts_never_fails() -> None:
    histogram = LoopHistogram("busy_seconds", "Busy.", ("n",), LATENCY_BUCKETS)
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        try:
            while not stop.is_set():
                exposition(histogram)
        except BaseException as failure:  # noqa: BLE001 - the test reports whatever it was
            failures.append(failure)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for n in range(50_000):
            histogram.observe((str(n % 500),), n / 1000)  # new series keep coming while it scrapes
    finally:
        stop.set()
        scraper.join()

    assert failures == []
    assert sum(histogram.count((str(n),)) for n in range(500)) == 50_000
