"""Counters and histograms counted on the request path without a lock, turned into Prometheus samples
when scraped.

prometheus_client's metrics are made for any thread: every ``inc`` and ``observe`` takes a lock and checks
that the metric may be observed, and every ``labels()`` takes another. A request of anygate's counts itself
five times (its request, its latency, its input and output tokens, its cost), all in the event loop's
thread; with these classes that is a dict lookup and an addition each, about 8 µs less a request (measured
in-process, docs/benchmarks.md). The exposition is prometheus_client's own: the samples are handed to its
families at scrape time, so names, ``_total``, ``_bucket``, ``_sum``, ``_count`` and ``_created`` read as
before.

Only one thread may count (the event loop's). A scrape may run in another thread: it reads a copy of each
series made in one step, so it never sees a dict change size under it.

Counters and histograms count every label set, as prometheus_client's would: their labels are kept few
where they are made (a model its provider does not list is ``unlisted``, key aliases past a thousand are
``other``), and a count must never be lost. A gauge may be given a ``limit`` of label sets.
``PROMETHEUS_DISABLE_CREATED_SERIES`` is honoured as prometheus_client honours it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]
GAUGE_SERIES_LIMIT = 10_000  # label sets a gauge keeps unless told otherwise; past it, new ones are not set


class LoopCounter(Collector):
    """A counter of label sets (``name`` without ``_total``), counted from the event loop's thread."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._values: dict[Labels, float] = {}
        self._created: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        values = self._values
        if labels in values:
            values[labels] += amount
        else:
            self._created[labels] = time.time()
            values[labels] = amount

    def value(self, labels: Labels) -> float:
        """What one label set has counted (0 when it has counted nothing)."""
        return self._values.get(labels, 0.0)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = self._created if shows_created() else {}
        for labels, value in list(self._values.items()):
            family.add_metric(labels, value, created=created.get(labels))
        yield family


class LoopGauge(Collector):
    """A gauge of label sets, set from the event loop's thread (``limit``: the label sets it keeps)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], limit: int = GAUGE_SERIES_LIMIT
    ) -> None:
        self.name, self.documentation, self.labelnames, self.limit = name, documentation, tuple(labelnames), limit
        self._values: dict[Labels, float] = {}

    def set(self, labels: Labels, value: float) -> None:
        if labels in self._values or len(self._values) < self.limit:
            self._values[labels] = value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self._values.items()):
            family.add_metric(labels, value)
        yield family


class LoopHistogram(Collector):
    """A histogram of label sets over fixed ``buckets`` (upper bounds), observed from the event loop's
    thread. Each series keeps one count per bucket (not cumulative: one addition an observation) and its
    sum; the cumulative counts are made when scraped."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._bounds = (*sorted(float(bound) for bound in buckets), float("inf"))
        self._bound_texts = [le_text(bound) for bound in self._bounds]
        self._series: dict[Labels, list[float]] = {}  # the buckets' counts, then the sum
        self._created: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self._series.get(labels)
        if series is None:
            self._created[labels] = time.time()
            series = self._series[labels] = [0.0] * (len(self._bounds) + 1)
        series[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value
        series[-1] += value

    def count(self, labels: Labels) -> float:
        """How many observations one label set has had."""
        series = self._series.get(labels)
        return 0.0 if series is None else sum(series[:-1])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created_times = self._created if shows_created() else {}
        for labels, series in list(self._series.items()):
            counts = series.copy()  # one step: the loop's thread may be counting meanwhile
            cumulative, buckets = 0.0, []
            for text, count in zip(self._bound_texts, counts, strict=False):
                cumulative += count
                buckets.append((text, cumulative))
            family.add_metric(labels, buckets, counts[-1])
            created = created_times.get(labels)
            if created is not None:
                family.samples.append(
                    Sample(f"{self.name}_created", dict(zip(self.labelnames, labels, strict=True)), created)
                )
        yield family


def le_text(bound: float) -> str:
    """A bucket's ``le`` label as prometheus_client writes it (``0.5``, ``1.0``, ``+Inf``)."""
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


def shows_created() -> bool:
    """Whether ``_created`` samples are exposed: prometheus_client's own switch
    (``PROMETHEUS_DISABLE_CREATED_SERIES``), read as its metrics read it."""
    return bool(getattr(prometheus_metrics, "_use_created", True))
