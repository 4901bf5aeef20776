"""Fixtures of the local control plane's own tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import Kube


@pytest.fixture
def ns(kube: Kube, local_cluster: Any) -> Iterator[str]:
    """A namespace of its own for one test, deleted (without waiting) after it."""
    name = f"lc-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
