"""The checkpoint of a concurrent backfill: pages finish out of order, none counts twice."""

from __future__ import annotations

from spoke.sync.run_frontier import IdFrontier


def test_frontier_advances_only_over_contiguous_pages() -> None:
    frontier = IdFrontier()
    frontier.complete(100, 200)  # the second page finishes first
    assert (frontier.frontier, frontier.done) == (0, [(100, 200)])
    frontier.complete(0, 100)
    assert (frontier.frontier, frontier.done) == (200, [])
    frontier.complete(0, 100)  # a page redone after a crash changes nothing
    assert (frontier.frontier, frontier.done) == (200, [])


def test_replanning_skips_finished_intervals_and_stops_at_the_next_one() -> None:
    frontier = IdFrontier.from_checkpoint({"frontier": 200, "done": [[300, 400], [400, 450]]})
    assert frontier.skip_done(200) == (200, 300)  # plan (200, 300] and no further
    assert frontier.skip_done(300) == (450, None)  # both finished pages are jumped over
    restored = IdFrontier.from_checkpoint(frontier.to_checkpoint())
    assert restored == frontier


def test_sequential_checkpoints_of_earlier_releases_read_as_a_frontier() -> None:
    assert IdFrontier.from_checkpoint({"after_user_id": 700}).frontier == 700
