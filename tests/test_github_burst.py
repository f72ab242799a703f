"""A burst of signed push deliveries while commits are pushed, against the real `slipway dev`.

The bounded version of tests/benchmarks/webhook_burst.py: 200 deliveries from 10 clients at
once, 30% of them GitHub-style redeliveries (same id, same body), while 5 commits are pushed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_load import GITHUB_TIMEOUT_S, Burst, connected_runner, run_burst


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Burst]:
    root: Path = tmp_path_factory.mktemp("github-burst")
    with connected_runner(root) as world:
        yield run_burst(world, deliveries=200, clients=10, commits=5, duplicates=0.3)


@pytest.mark.timeout(300)
def test_every_delivery_of_a_burst_is_answered_2xx_within_githubs_10_s(burst: Burst) -> None:
    assert len(burst.statuses) == 200
    assert all(200 <= s < 300 for s in burst.statuses), sorted(set(burst.statuses))
    assert max(burst.times) < GITHUB_TIMEOUT_S, f"slowest answer {max(burst.times):.1f} s"


@pytest.mark.timeout(300)
def test_a_burst_journals_each_commit_at_most_once_and_ends_on_the_last_commit(burst: Burst) -> None:
    assert burst.final == "", burst.final
    assert burst.journaled()[burst.commits[-1]] == 1
    assert all(count <= 1 for count in burst.journaled().values()), burst.journaled()
    assert burst.overlaps() == 0


@pytest.mark.timeout(300)
def test_after_a_burst_the_sync_orchestration_completes(burst: Burst) -> None:
    assert burst.orchestration == "Completed", f"{burst.orchestration}; {len(burst.passes)} passes"
