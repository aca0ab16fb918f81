"""Read-your-writes on one worker: a commit raises this worker's view floors at once, so a
read after any write (not only a PATCH's write-through) never answers from the snapshot
before it, however late the change feed's notification is."""

from __future__ import annotations

from types import SimpleNamespace

from consent.api.freshness import note_committed
from consent.domain.model import SubjectSnapshot
from consent.service.subject_view import SubjectView


def worker_view() -> SubjectView:
    view = SubjectView(size=100, max_age_s=60)
    view.live = True
    return view


def request_on(view: SubjectView) -> SimpleNamespace:
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(view=view)),
                           state=SimpleNamespace())  # fmt: skip


def test_a_commit_drops_the_older_snapshot_before_any_notification() -> None:
    view = worker_view()
    view.put(view.ticket(), SubjectSnapshot("u-1", sequence=2))  # a PATCH's write-through
    assert view.get("u-1") is not None
    merge = SimpleNamespace(committed_sequences={"u-1": 3, "anon:x": 3})  # no snapshot
    note_committed(request_on(view), merge)
    assert view.get("u-1") is None  # the next read goes to the database
    view.put(view.ticket(), SubjectSnapshot("u-1", sequence=2))  # a read begun before it
    assert view.get("u-1") is None  # refused: older than what this worker committed
    view.put(view.ticket(), SubjectSnapshot("u-1", sequence=3))
    assert view.get("u-1").sequence == 3  # type: ignore[union-attr]


def test_a_later_notification_for_the_same_commit_changes_nothing() -> None:
    view = worker_view()
    note_committed(request_on(view), SimpleNamespace(committed_sequences={"u-2": 5}))
    view.put(view.ticket(), SubjectSnapshot("u-2", sequence=5))
    view.changed("u-2", 5)
    assert view.get("u-2").sequence == 5  # type: ignore[union-attr]
