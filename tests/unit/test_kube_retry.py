"""The operator's API calls send a request again after a 429's Retry-After, as client-go does."""

from __future__ import annotations

import pytest
from elasticjob_operator import kube
from kubernetes.client.exceptions import ApiException


def rejected(status: int, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="Too Many Requests")
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return exc


def test_retry_after_is_read_from_429s_only_and_bounded() -> None:
    assert kube.retry_after(rejected(429, "4")) == 4.0
    assert kube.retry_after(rejected(429)) == kube.RETRY_AFTER_DEFAULT
    assert kube.retry_after(rejected(429, "soon")) == kube.RETRY_AFTER_DEFAULT
    assert kube.retry_after(rejected(429, "3600")) == kube.RETRY_AFTER_MAX
    assert kube.retry_after(rejected(409)) is None
    assert kube.retry_after(rejected(500, "4")) is None


def test_a_429_is_sent_again_after_its_retry_after() -> None:
    answers: list[ApiException | str] = [rejected(429, "2"), rejected(429, "1"), "created"]
    waits: list[float] = []

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, ApiException):
            raise answer
        return answer

    assert kube.send(call, sleep=waits.append) == "created"
    assert waits == [2.0, 1.0]


def test_other_errors_and_the_last_429_fail_at_once() -> None:
    def conflict() -> None:
        raise rejected(409)

    with pytest.raises(ApiException) as info:
        kube.send(conflict, sleep=lambda _: None)
    assert info.value.status == 409
    waits: list[float] = []

    def always_429() -> None:
        raise rejected(429, "1")

    with pytest.raises(ApiException):
        kube.send(always_429, sleep=waits.append)
    assert len(waits) == kube.RETRIES_429


def test_rate_limiter_is_a_token_bucket() -> None:
    from elasticjob_operator.kube import RateLimiter

    now = [0.0]
    bucket = RateLimiter(qps=10, burst=2, clock=lambda: now[0])
    assert [bucket.delay(), bucket.delay()] == [0.0, 0.0]  # the burst
    assert bucket.delay() == pytest.approx(0.1)  # then one token per 1/qps
    now[0] = 1.0  # a second later the bucket is full again, never above burst
    assert [bucket.delay(), bucket.delay(), round(bucket.delay(), 3)] == [0.0, 0.0, 0.1]
    assert RateLimiter().delay() == 0.0  # qps 0: unthrottled
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimiter(qps=5, burst=0)
