"""Exit codes of `elasticjob-launch`: the contract that lets the operator tell outcomes apart.

The launcher exits with one of these; the operator reads the trainer container's exit code from
the pod status and classifies the failure (see `elasticjob_operator.failures`). Codes above 128
are left to signals (128 + signal number), as shells and the kubelet report them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    SUCCESS = 0
    #: the training script failed and the job-wide restart budget is spent (or it failed at once)
    USER_ERROR = 3
    #: invalid launcher flags or environment
    CONFIG_ERROR = 4
    #: the rendezvous store could not be reached within the timeout
    STORE_UNREACHABLE = 75
    #: the rendezvous did not complete within its join timeout
    RENDEZVOUS_TIMEOUT = 76
    #: any other failure of the agent itself (not of the training script)
    INFRASTRUCTURE = 77
    #: the agent was asked to leave (SIGTERM on scale-down) and left without closing the rendezvous
    DRAINED = 78
