from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deployguard import fingerprint
from deployguard.fingerprint import _SQLiteFingerprint, fingerprint_table, row_hashes, sqlite_row_hash
from documents.models import Submission
from tests.factories import SubmissionFactory

NOT_BUILT = "deployguard._rowhash is not built (run `make rowhash`; it needs a C compiler)"


def import_rowhash() -> ModuleType | None:
    try:
        return importlib.import_module("deployguard._rowhash")
    except ImportError:
        return None


@pytest.fixture(scope="module")
def rowhash() -> ModuleType:
    module = import_rowhash()
    if module is None:
        pytest.skip(NOT_BUILT)
    return module


def test_rowhash_module_is_built_on_ci():
    module = import_rowhash()
    if module is None and os.environ.get("CI") != "true":
        pytest.skip(NOT_BUILT)
    assert module is not None, f"CI=true: {NOT_BUILT}; `make test` builds it before the tests."
    assert fingerprint.sqlite_row_hash_function is module.row_hash
    assert fingerprint.sqlite_fingerprint_aggregate is module.FingerprintAggregate


EDGE_INTS = [0, 1, -1, 2**15, 2**30, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**62, 2**63 - 1, -(2**63)]
NAN_WITH_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0xFFF0_0000_0000_0001))[0]
EDGE_FLOATS = [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), -float("nan"), NAN_WITH_PAYLOAD]
EDGE_TEXT = ["", "a", "é", "\x00", "😀" * 3, "\ud800", "x\udfffy", "a" * 200_000, "ü" * 70_000]
EDGE_BYTES = [b"", b"\x00", bytes(range(256)), b"\xff" * 130_000]

# Every type SQLite hands Python: NULL, INTEGER (signed 64-bit), REAL, TEXT, BLOB.
sqlite_values = st.one_of(
    st.none(),
    st.sampled_from(EDGE_INTS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(EDGE_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_TEXT),
    st.text(st.characters(exclude_categories=[]), max_size=300),
    st.sampled_from(EDGE_BYTES),
    st.binary(max_size=300),
)
rows = st.lists(sqlite_values, max_size=12).map(tuple)

BOUNDED = hypothesis_settings(max_examples=300, deadline=None, derandomize=True)


@BOUNDED
@given(row=rows)
def test_c_row_hash_equals_the_python_reference(rowhash, row):
    assert rowhash.row_hash(*row) == sqlite_row_hash(*row)


@BOUNDED
@given(table=st.lists(rows, max_size=20))
def test_c_fingerprint_aggregate_equals_the_python_reference(rowhash, table):
    ours, reference = rowhash.FingerprintAggregate(), _SQLiteFingerprint()
    for row in table:
        ours.step(*row)
        reference.step(*row)
    assert ours.finalize() == reference.finalize()


def test_c_aggregate_sums_modulo_2_64_as_unsigned_text(rowhash):
    ours, reference = rowhash.FingerprintAggregate(), _SQLiteFingerprint()
    assert ours.finalize() == "0"
    for n in range(2_000):
        ours.step(n, "row")
        reference.step(n, "row")
    assert ours.finalize() == reference.finalize()
    assert 0 <= int(ours.finalize()) < fingerprint.MODULUS


class IntSubclass(int):
    pass


class StrSubclass(str):
    pass


@pytest.mark.parametrize(
    "row",
    [
        (True, False),
        (2**64,),
        (-(2**100), 2**1000),
        ([1, "a"], (None, 2.5)),
        (frozenset({1}), 1j),
    ],
    ids=["bool", "int-beyond-64-bits", "huge-ints", "list-and-tuple", "frozenset-complex"],
)
def test_c_row_hash_of_values_sqlite_never_passes_goes_through_marshal(rowhash, row):
    assert rowhash.row_hash(*row) == sqlite_row_hash(*row)


@pytest.mark.parametrize(
    "value", [object(), IntSubclass(7), StrSubclass("a")], ids=["object", "int-subclass", "str-subclass"]
)
def test_c_row_hash_raises_what_marshal_raises_for_values_it_cannot_encode(rowhash, value):
    with pytest.raises(ValueError, match="unmarshallable object"):
        sqlite_row_hash(1, value)
    with pytest.raises(ValueError, match="unmarshallable object"):
        rowhash.row_hash(1, value)
    with pytest.raises(ValueError, match="unmarshallable object"):
        rowhash.FingerprintAggregate().step(1, value)


@pytest.fixture
def python_row_hash(monkeypatch):
    """Force fingerprint.py's pure-Python fallback, as when the C module is not built."""

    def force() -> None:
        monkeypatch.setattr(fingerprint, "sqlite_row_hash_function", sqlite_row_hash)
        monkeypatch.setattr(fingerprint, "sqlite_fingerprint_aggregate", _SQLiteFingerprint)

    return force


@pytest.fixture
def typed_scratch_table(db):
    if connection.vendor != "sqlite":
        pytest.skip("the C row hash is SQLite's: PostgreSQL hashes with hashtextextended()")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE fp_typed (i integer, r real, t text, b blob, x)")
        cursor.executemany(
            "INSERT INTO fp_typed (i, r, t, b, x) VALUES (%s, %s, %s, %s, %s)",
            [
                (0, 0.0, "", b"", None),
                (2**63 - 1, -0.0, "é😀", b"\x00\xff", 2**31),
                (-(2**63), float("inf"), "a" * 70_000, bytes(range(256)), -(2**31) - 1),
                (None, float("-inf"), None, None, "text in an untyped column"),
                (2**31 - 1, 1e-300, "ML-001", b"bytes", 3.25),
            ],
        )
    return "fp_typed"


def test_fingerprint_table_is_the_same_through_c_and_python(rowhash, typed_scratch_table, python_row_hash):
    assert fingerprint.sqlite_row_hash_function is rowhash.row_hash
    through_c = fingerprint_table(typed_scratch_table)
    python_row_hash()
    through_python = fingerprint_table(typed_scratch_table)
    assert through_c.count == 5
    assert through_c == through_python


def test_model_fingerprint_and_row_hashes_are_the_same_through_c_and_python(rowhash, db, python_row_hash):
    if connection.vendor != "sqlite":
        pytest.skip("the C row hash is SQLite's: PostgreSQL hashes with hashtextextended()")
    SubmissionFactory.create_batch(3)
    through_c = (fingerprint_table(Submission), list(row_hashes(Submission)))
    python_row_hash()
    assert (fingerprint_table(Submission), list(row_hashes(Submission))) == through_c
