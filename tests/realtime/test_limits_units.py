"""limits.py: quota specs."""

import pytest

from wsapp.realtime.limits import applicable_quotas, parse_quotas


@pytest.mark.parametrize("spec", ["promo", "promo=3", "promo=x/day", "promo=3/fortnight",
                                  "=3/day", "promo=-1/day"])
def test_bad_quota_specs(spec):
    with pytest.raises(ValueError):
        parse_quotas(spec)


def test_quota_spec():
    assert parse_quotas(" promo=3/day, total=20/days ,x=1/minute") == {
        "promo": (3, 86400.0), "total": (20, 86400.0), "x": (1, 60.0)}


def test_the_quotas_a_push_counts_against():
    quotas = parse_quotas("promo=3/day,total=20/hour,news=1/week")
    assert applicable_quotas(quotas, "ann", "promo") == [
        ("promo", 3, 86400.0, "quota promo=3/day reached for user ann"),
        ("total", 20, 3600.0, "quota total=20/hour reached for user ann")]
    assert [q[0] for q in applicable_quotas(quotas, "ann", None)] == ["total"]
