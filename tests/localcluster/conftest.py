"""Fixtures of the local control plane's own tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import Kube


def _namespace(kube: Kube) -> Iterator[str]:
    name = f"lc-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def ns(kube: Kube, local_cluster: Any) -> Iterator[str]:
    """A namespace of its own for one test, deleted (without waiting) after it."""
    yield from _namespace(kube)


@pytest.fixture
def other_ns(kube: Kube, local_cluster: Any) -> Iterator[str]:
    """A second namespace, for what crosses namespaces."""
    yield from _namespace(kube)
