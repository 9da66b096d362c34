"""The anchors' history read incrementally (``pds_kernel/audit_anchor_history.py``): what honest
writers append is never taken for a rollback, and a number anchored again with another hash, or
with a new hash long after a higher one, is; on a real anchor file of authenticated lines."""

from __future__ import annotations

from pds_kernel.audit_anchor import Anchor, FileAnchorStore, signed
from pds_kernel.audit_anchor_history import WINDOW, AnchorHistory
from pds_kernel.audit_key import AuditKey, Keyring

KEYRING = Keyring((AuditKey(b"k" * 32),))


def _anchor(seq: int, tag: str = "", reason: str = "write") -> Anchor:
    return signed(Anchor(seq=seq, head=f"{tag}{seq}".rjust(64, "0"), time="2026-12-05T00:00:00+00:00", keyed_from=1,
                         key_id=KEYRING.keys[0].key_id, reason=reason), KEYRING)


def test_honest_anchors_late_repeated_or_after_a_large_commit(tmp_path):
    store = FileAnchorStore(tmp_path / "anchors.jsonl", KEYRING)
    history = AnchorHistory(store)
    for seq in range(1, 2 * WINDOW):
        store.append(_anchor(seq))
    history.refresh()
    store.append(_anchor(2 * WINDOW + 20_000))  # an ingest's one commit of 20,000 entries...
    store.append(_anchor(2 * WINDOW))  # ...anchored before the commit that came first
    for _ in range(WINDOW + 5):  # verifications with nothing written since
        store.append(_anchor(2 * WINDOW + 20_000, reason="verify"))
    history.refresh()
    assert history.top == (2 * WINDOW + 20_000, _anchor(2 * WINDOW + 20_000).head)
    assert history.rolled_back_from is None
    fresh = AnchorHistory(store)  # a process reading the whole file at once agrees
    fresh.refresh()
    assert (fresh.top, fresh.rolled_back_from) == (history.top, None)


def test_a_number_anchored_again_with_another_hash_or_an_old_head_named_again(tmp_path):
    store = FileAnchorStore(tmp_path / "anchors.jsonl", KEYRING)
    for seq in range(1, 3 * WINDOW):
        store.append(_anchor(seq))
    history = AnchorHistory(store)
    history.refresh()
    store.append(_anchor(3 * WINDOW - 5, tag="b"))  # written again after a cut, recently
    history.refresh()
    assert history.rolled_back_from == 3 * WINDOW - 5
    store.append(_anchor(WINDOW, tag="b"))  # long ago
    history.refresh()
    assert history.rolled_back_from == WINDOW
    store.append(_anchor(WINDOW // 2))  # an old head named again as it was: says nothing new
    history.refresh()
    assert history.rolled_back_from == WINDOW
    store.append(_anchor(WINDOW // 2, tag="c"))  # an old number with another hash (red team 8, with the key)
    history.refresh()
    assert history.rolled_back_from == WINDOW // 2
    assert history.top[0] == 3 * WINDOW - 1


def test_an_anchor_file_cut_is_a_rollback(tmp_path):
    store = FileAnchorStore(tmp_path / "anchors.jsonl", KEYRING)
    for seq in range(1, 10):
        store.append(_anchor(seq))
    history = AnchorHistory(store)
    history.refresh()
    store.path.write_text("")
    history.refresh()
    assert history.rolled_back_from == 0
