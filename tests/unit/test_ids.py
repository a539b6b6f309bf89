"""Ids sort by creation, also many within one millisecond (rows of one transaction)."""

from __future__ import annotations

import re
import threading

from server.domain.ids import new_id


def test_ids_have_the_prefix_and_24_base36_chars() -> None:
    assert re.fullmatch(r"whd_[0-9a-z]{24}", new_id("whd"))


def test_ids_made_in_a_burst_are_strictly_increasing() -> None:
    ids = [new_id("evt") for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_id("pay") for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for bucket in made for i in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in made:
        assert bucket == sorted(bucket)
