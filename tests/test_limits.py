"""Client-side pacing: the delay computation, checked at chosen instants (no clock involved)."""

from lcsynth.backends.limits import MinuteRateLimiter


def test_requests_per_minute_waits_for_the_oldest_to_leave_the_window():
    limiter = MinuteRateLimiter(requests_per_minute=2, tokens_per_minute=None)
    assert limiter._delay(0.0, 1) == 0
    limiter._sent.extend([(0.0, 1), (10.0, 1)])
    assert limiter._delay(15.0, 1) == 45.0  # the request at t=0 leaves the window at t=60
    assert limiter._delay(61.0, 1) == 0  # ... and is dropped from it


def test_tokens_per_minute_waits_until_enough_spending_expires():
    limiter = MinuteRateLimiter(requests_per_minute=None, tokens_per_minute=1000)
    limiter._sent.extend([(0.0, 600), (20.0, 300)])
    assert limiter._delay(30.0, 100) == 0  # 1000 fits exactly
    assert limiter._delay(30.0, 200) == 30.0  # must wait for the 600 spent at t=0
    assert limiter._delay(30.0, 800) == 50.0  # ... and the 300 spent at t=20


def test_no_limits_means_no_waiting():
    assert not MinuteRateLimiter(None, None).active
