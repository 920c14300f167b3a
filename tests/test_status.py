"""The status rule book on its own: every worker move, allowed or not."""

from __future__ import annotations

import pytest

from tqhpc.status import (
    Status,
    TransitionError,
    check_worker_transition,
    parse_status,
    parse_status_filter,
    status_letters,
)

ALLOWED = {("A", "C"), ("A", "R"), ("A", "F"), ("C", "R"), ("C", "S"), ("C", "F"), ("R", "S"), ("R", "F")}


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("new", list(Status))
def test_worker_moves(current: Status, new: Status) -> None:
    if new.value in "CRSF" and new == current:
        assert check_worker_transition(1, current, new) is False
    elif (current.value, new.value) in ALLOWED:
        assert check_worker_transition(1, current, new) is True
    else:
        with pytest.raises(TransitionError, match=f"task 1|status {new.value}"):
            check_worker_transition(1, current, new)


def test_unknown_letter_lists_the_known_ones() -> None:
    with pytest.raises(TransitionError, match=r"unknown status letter 'Z'.*W P A C R S F X"):
        parse_status("Z")


def test_filter_takes_several_letters() -> None:
    assert parse_status_filter("SF") == {Status.SUCCEEDED, Status.FAILED}
    assert parse_status_filter("") == frozenset()
    with pytest.raises(TransitionError):
        parse_status_filter("Sq")


def test_filter_takes_names_as_well_as_letters() -> None:
    assert parse_status_filter("Running") == {Status.RUNNING}
    assert parse_status_filter("failed, x,sp") == {Status.FAILED, Status.CANCELLED, Status.SUCCEEDED, Status.PENDING}
    assert status_letters("cancelled,waiting,R") == "WRX"  # in the model's order, as every server takes them
    with pytest.raises(TransitionError, match=r"unknown status 'runing': give letters \(W P A C R S F X\) or names"):
        parse_status_filter("runing")
