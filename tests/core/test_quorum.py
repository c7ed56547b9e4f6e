"""The quorum room (trioraft/_core/quorum.py): one voter set or two (joint consensus,
§4.3), against a brute-force reading of "a majority of each set"."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from trioraft._core.quorum import Quorum, majority

NAMES = list("abcdefg")


def test_a_majority_with_its_floor() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    assert majority(3, min_majority=3) == 3
    assert majority(5, min_majority=2) == 3


def test_a_joint_quorum_needs_both_sets() -> None:
    joint = Quorum(["d", "e", "f"], outgoing=["a", "b", "c"])
    assert joint.joint and joint.voters == set("abcdef")
    assert not joint.reached(lambda n: n in "abc")  # the old set alone
    assert not joint.reached(lambda n: n in "def")  # the new set alone
    assert joint.reached(lambda n: n in "abde")
    assert joint.lost(lambda n: n in "ab") and not joint.lost(lambda n: n in "ad")
    match = dict(zip("abcdef", [9, 9, 1, 5, 5, 1], strict=True))
    assert joint.agreed_value(match.__getitem__) == 5  # the new set holds only 5


def test_no_quorum_is_possible_below_the_floor() -> None:
    q = Quorum(["a", "b"], min_majority=3)
    assert not q.possible() and q.agreed_value(lambda n: 1) is None
    assert not q.reached(lambda n: True) and q.lost(lambda n: False)


def _brute_reached(sets: list[list[str]], agree: set[str], floor: int | None) -> bool:
    return all(len(agree & set(s)) >= majority(len(s), floor) for s in sets)


def _brute_agreed(sets: list[list[str]], value: dict[str, int], floor: int | None) -> int | None:
    best = None
    for s in sets:
        size = majority(len(s), floor)
        candidates = (
            [min(value[n] for n in group) for group in itertools.combinations(s, size)]
            if size <= len(s)
            else []
        )
        if not candidates:
            return None
        here = max(candidates)
        best = here if best is None else min(best, here)
    return best


voter_sets = st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True)


@given(
    voters=voter_sets,
    outgoing=st.none() | voter_sets,
    agree=st.sets(st.sampled_from(NAMES)),
    values=st.lists(st.integers(0, 20), min_size=len(NAMES), max_size=len(NAMES)),
    floor=st.none() | st.integers(0, 6),
)
def test_the_rule_is_a_majority_of_each_set(
    voters: list[str],
    outgoing: list[str] | None,
    agree: set[str],
    values: list[int],
    floor: int | None,
) -> None:
    q = Quorum(voters, outgoing, floor)
    sets = [voters] if outgoing is None else [voters, outgoing]
    assert q.reached(agree.__contains__) == _brute_reached(sets, agree, floor)
    refused = set(NAMES) - agree
    can_win = _brute_reached(sets, set(NAMES) - refused, floor)
    assert q.lost(refused.__contains__) == (not can_win)
    value = dict(zip(NAMES, values, strict=True))
    assert q.agreed_value(value.__getitem__) == _brute_agreed(sets, value, floor)
