"""Histograms as plain numbers."""

from core.metrics import LATENCY_BUCKETS, Buckets


def test_observing_many_at_once_counts_as_observing_each():
    values = [0.0, 0.001, 0.0011, 0.3, 7.0, 11.0, 0.02, 0.001]
    one_by_one, at_once = Buckets(LATENCY_BUCKETS), Buckets(LATENCY_BUCKETS)
    for v in values:
        one_by_one.observe(v)
    at_once.observe_many(iter(values))
    assert at_once.counts == one_by_one.counts
    assert (at_once.count, at_once.total) == (len(values), sum(values))
    assert at_once.cumulative()[-1] == ("+Inf", len(values))
    assert dict(at_once.cumulative())["0.001"] == 3  # le: the bound itself counts
