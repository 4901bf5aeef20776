"""Report this agent's rounds, restarts and failures into its own ElasticJob's status.

One JSON merge patch of `status.restarts.workers.<pod>` on
`/apis/elasticjob.io/v1alpha1/namespaces/<ns>/elasticjobs/<job>/status`, the only write the
pod's ServiceAccount may do. Patches are sent from a background thread, newest state wins, each
with a short timeout: reporting never blocks or kills training. Without a configured job
(plain torchrun use) or without in-cluster credentials, reporting is off after one warning; if
the API stops answering, one warning is logged and later patches are still tried.

Limits: stdlib HTTPS only (no kubernetes client in training images); the token is re-read for
each patch, so projected token rotation works.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticjob_api.models import API_VERSION, PLURAL, FailureClass, LastFailure, WorkerReport
from elasticjob_api.times import now_text

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MESSAGE_LIMIT = 2048


@dataclass(frozen=True)
class Target:
    namespace: str
    job: str
    pod: str
    api: str
    token_file: Path
    ca_file: Path

    @property
    def url(self) -> str:
        return f"{self.api}/apis/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.job}/status"


def target_from_env(env: Mapping[str, str] = os.environ, sa_dir: Path = SA_DIR) -> tuple[Target | None, str]:
    """Where to report, or None and why not."""
    names = [env.get(k, "") for k in ("ELASTICJOB_NAMESPACE", "ELASTICJOB_NAME", "ELASTICJOB_POD_NAME")]
    if not all(names):
        return None, "no ElasticJob configured (ELASTICJOB_NAME/NAMESPACE/POD_NAME unset)"
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    api = env.get("ELASTICJOB_API_URL") or (f"https://{host}:{port}" if host else "")
    if not api:
        return None, "no Kubernetes API address (KUBERNETES_SERVICE_HOST unset)"
    token, ca = sa_dir / "token", sa_dir / "ca.crt"
    if not token.exists():
        return None, f"no service-account token at {token}"
    return Target(names[0], names[1], names[2], api.replace("https://[", "https://["), token, ca), ""


def worker_entry(
    *,
    restarts: int,
    round_: int | None,
    world_size: int | None,
    node_rank: int | None,
    binding: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """The status entry of one worker pod, written through the API's `WorkerReport` model.

    Unset fields are sent as null, which the merge patch turns into "remove" (a round without
    pinning clears an old binding); `lastFailure` is left out unless given, so the newest failure
    stays in the status across later rounds.
    """
    report = WorkerReport(
        restarts=restarts,
        round=round_,
        world_size=world_size,
        node_rank=node_rank,
        binding=binding,
        last_failure=LastFailure.model_validate(failure) if failure is not None else None,
        update_time=time or now_text(),
    )
    entry = report.model_dump(by_alias=True, mode="json")
    if failure is None:
        del entry["lastFailure"]
    return entry


#: traceback lines kept after the error in `lastFailure.message`
TRACEBACK_LINES = 6


def failure_text(error: object) -> str:
    """A worker's error as text: the error line, then the last lines of its traceback.

    torchelastic's error file (written by `@record`) holds {"message": ..., "extraInfo":
    {"py_callstack": ...}}; anything else (a stderr excerpt, a string) is returned as it is.
    """
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message", "")).strip()
    stack = str((error.get("extraInfo") or {}).get("py_callstack", "")).strip().splitlines()
    if stack and stack[-1].strip() == message:
        stack = stack[:-1]
    tail = [line for line in stack[-TRACEBACK_LINES:] if line.strip()]
    return "\n".join([message, *tail]) if tail else message


def failure_entry(
    global_rank: int, exit_code: int, message: str, time: str | None = None, *, round_: int | None = None
) -> dict[str, Any]:
    """`lastFailure`, through the API's model: negative exit codes are signals (torch reports -N)."""
    failure = LastFailure(
        global_rank=global_rank,
        exit_code=exit_code,
        failure_class=(FailureClass.SIGNAL if exit_code < 0 else FailureClass.USER_ERROR).value,
        message=message[-MESSAGE_LIMIT:],
        time=time or now_text(),
        round=round_,
    )
    return failure.model_dump(by_alias=True, exclude_none=True, mode="json")


def hang_entry(
    global_rank: int,
    message: str,
    *,
    step: int | None,
    stalled_seconds: float,
    time: str | None = None,
    round_: int | None = None,
) -> dict[str, Any]:
    """`lastFailure` of a stall (stall.py), reported before the group is stopped: no exit code yet."""
    failure = LastFailure(
        global_rank=global_rank,
        failure_class=FailureClass.HANG.value,
        message=message[:MESSAGE_LIMIT],  # the head: the summary, then the stack's newest frames
        step=step,
        stalled_seconds=round(stalled_seconds, 1),
        time=time or now_text(),
        round=round_,
    )
    return failure.model_dump(by_alias=True, exclude_none=True, mode="json")


def patch_body(pod: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"restarts": {"workers": {pod: entry}}}}


class Reporter:
    """Sends the newest worker entry in the background; `report()` never blocks."""

    def __init__(self, target: Target | None, reason: str = "", timeout: float = 5.0) -> None:
        self.target = target
        self.timeout = timeout
        self._pending: dict[str, Any] | None = None
        self._last_failure: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._warned = False
        self._closed = False
        self.sent = 0
        if target is None:
            log.warning("status reporting disabled: %s", reason)
            return
        self._thread = threading.Thread(target=self._loop, daemon=True, name="status-reporter")
        self._thread.start()

    @classmethod
    def from_env(cls) -> Reporter:
        target, reason = target_from_env()
        return cls(target, reason)

    def report(self, entry: dict[str, Any]) -> None:
        if self.target is None:
            return
        if "lastFailure" in entry:
            self._last_failure = entry["lastFailure"]
        elif self._last_failure is not None:
            entry = {**entry, "lastFailure": self._last_failure}
        with self._cond:
            self._pending = entry
            self._cond.notify()

    def close(self, wait: float = 3.0) -> None:
        """Flush what is pending (bounded by `wait`) and stop."""
        if self.target is None:
            return
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(wait)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                entry, self._pending = self._pending, None
                closed = self._closed
            if entry is not None:
                self._send(entry)
            if closed and self._pending is None:
                return

    def _send(self, entry: dict[str, Any]) -> None:
        target = self.target
        if target is None:
            return
        try:
            token = target.token_file.read_text().strip()
            context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file.exists() else None)
            request = urllib.request.Request(  # noqa: S310 (https URL built from the in-cluster env)
                target.url,
                data=json.dumps(patch_body(target.pod, entry)).encode(),
                method="PATCH",
                headers={"Content-Type": "application/merge-patch+json", "Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:  # noqa: S310
                response.read()
            self.sent += 1
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if not self._warned:
                log.warning("status report to %s failed (training goes on): %s", target.url, exc)
                self._warned = True
