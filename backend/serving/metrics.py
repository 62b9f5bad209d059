"""/metrics in Prometheus' text format, the same whichever gunicorn worker answers.

Request counts and latencies use prometheus_client; under `clinlinker serve` every worker writes them to a shared
directory (PROMETHEUS_MULTIPROC_DIR, prometheus_client's multiprocess mode) and a scrape sums them. What the
backend accepted (webhooks by action and outcome, annotations, links) is read from the store of record at scrape
time, so it is one number for every process and host.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, store=None):
        self.registry = CollectorRegistry()
        self.predict_requests = Counter("clinlinker_predict_requests", "Prediction requests answered",
                                        registry=self.registry)
        self.predict_tasks = Counter("clinlinker_predict_tasks", "Tasks predicted", registry=self.registry)
        self.predict_spans = Counter("clinlinker_predict_spans", "Spans given candidates", registry=self.registry)
        self.predict_seconds = Histogram("clinlinker_predict_seconds", "Time to answer /predict",
                                         buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 100),
                                         registry=self.registry)
        self.webhook_seconds = Histogram("clinlinker_webhook_seconds", "Time to store a webhook's facts",
                                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1),
                                         registry=self.registry)
        self.taxonomy_requests = Counter("clinlinker_taxonomy_requests", "Candidate-list (picker) requests",
                                         registry=self.registry)
        self.errors = Counter("clinlinker_http_errors", "Error answers", ["status_class"], registry=self.registry)
        self.store = store

    def exposition(self) -> bytes:
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry)  # every worker's counts, summed
        else:
            registry = self.registry
        out = generate_latest(registry)
        if self.store is not None:
            out += generate_latest(_StoreCollector(self.store))
        return out


class _StoreCollector:
    """Metrics read from the store of record (the same for every process)."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        webhooks = CounterMetricFamily("clinlinker_webhooks", "Webhook events by action and outcome",
                                       labels=["action", "outcome"])
        try:
            counters = self.store.counters()
            facts = self.store.describe()
        except Exception:  # noqa: BLE001 - a store outage shows as clinlinker_store_up 0
            counters, facts = {}, {"available": False}
        for name, value in sorted(counters.items()):
            parts = name.split("|")
            if len(parts) == 3 and parts[0] == "webhook":
                webhooks.add_metric([parts[1], parts[2]], value)
        yield webhooks
        up = GaugeMetricFamily("clinlinker_store_up", "Whether the store of record answers")
        up.add_metric([], 1 if facts.get("available") else 0)
        yield up
        for key, help_text in (("annotations", "Annotations kept (tombstones included)"),
                               ("accepted_links", "Accepted links"), ("candidate_lists", "Candidate lists kept"),
                               ("link_changes", "Link changes kept in the log")):
            if key in facts:
                gauge = GaugeMetricFamily(f"clinlinker_{key}", help_text)
                gauge.add_metric([], facts[key])
                yield gauge
