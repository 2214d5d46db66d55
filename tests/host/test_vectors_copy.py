# tests/host/data/mep-digest.json is a copy of the shared golden vectors (../shared/vectors
# beside the repository, when present) so that a clone is self-contained. Keep them identical.
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COPY = os.path.join(ROOT, 'tests', 'host', 'data', 'mep-digest.json')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'vectors', 'mep-digest.json')


def test_vectors_copy_matches_shared():
    if not os.path.exists(SHARED):
        pytest.skip('no ../shared/vectors/mep-digest.json beside the repository')
    with open(SHARED, 'rb') as a, open(COPY, 'rb') as b:
        assert b.read() == a.read(), 'tests/host/data/mep-digest.json differs from ' + SHARED
