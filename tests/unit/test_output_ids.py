"""Output ids are UUIDv5 of their cause, computed without the uuid module's objects."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from hub.outputs import _NAMESPACE, output_id


@given(parts=st.lists(st.text(), min_size=1, max_size=4))
def test_output_id_is_the_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    assert output_id(*parts) == str(uuid.uuid5(_NAMESPACE, "|".join(parts)))
