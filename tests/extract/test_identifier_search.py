"""The search for the lake's identifiers in an extract's texts (pds_kernel/extract/identifier_search.py):
its views of a text, and identifiers planted at random in random texts, every way the search
claims to read, always found (and nothing found in texts that hold none)."""

from __future__ import annotations

import base64
import random
import string

import polars as pl

from pds_kernel.extract.identifier_search import AS_WRITTEN, search, views

ALPHABET = string.ascii_uppercase + string.digits


def test_views_of_a_text_value():
    """The whole value, its tokens, its letters and digits (full-width folded), reversed, and its
    encoded runs decoded at every alignment; a cohort pseudonym is its whole value only."""
    secret = "AB12CD34EF56GH78Z"
    encoded = {"hex": "0" + secret.encode().hex(), "base64": "xy" + base64.b64encode(secret.encode()).decode(),
               "percent-encoded": "".join(f"%{b:02x}" for b in secret.encode()[:5]) + secret[5:]}
    values = pl.Series(["id=ab12-cd34", "ｘ１２", *encoded.values(), "f" * 64])
    found = views(values, whole_only=pl.Series(["f" * 64]))
    pairs = set(zip(found["view"], found["kind"], strict=True))
    assert {("id=ab12-cd34", AS_WRITTEN), ("id", AS_WRITTEN), ("ab12", AS_WRITTEN), ("idab12cd34", AS_WRITTEN),
            ("43dc21badi", "reversed"), ("x12", AS_WRITTEN)} <= pairs
    for kind in encoded:
        assert (secret, kind) in pairs and (secret[::-1], f"reversed {kind}") in pairs, kind
    assert found.filter(pl.col("value") == "f" * 64).select("view", "kind").rows() == [("f" * 64, AS_WRITTEN)]


def _disguise(rng: random.Random, nir: str) -> tuple[str, str]:
    """``nir`` inside random text, in one of the forms the search reads, and the kind it names."""
    before = "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(0, 9)))
    after = "".join(rng.choices(string.ascii_letters + " -_.", k=rng.randint(0, 9)))
    data = (before + nir + after).encode()
    forms = {
        "glued": (before + nir + after, AS_WRITTEN),
        "cut": (before + "".join(c + rng.choice(["", " ", "-", "\u200b", "/"]) for c in nir) + after, AS_WRITTEN),
        "lower": (before + nir.lower() + after, AS_WRITTEN),
        "reversed": ((before + nir + after)[::-1], "reversed"),
        "hex": (rng.choice(string.hexdigits) * rng.randint(0, 3) + data.hex(), "hex"),
        "base64": (before + base64.b64encode(data).decode(), "base64"),
        "base64url": (before + base64.urlsafe_b64encode(data).decode().rstrip("="), "base64"),
        "percent": ("".join(f"%{b:02X}" for b in data), "percent-encoded"),
    }
    return forms[rng.choice(sorted(forms))]


def test_identifiers_planted_at_random_are_all_found():
    rng = random.Random(19)
    lake = ["".join(rng.choices(ALPHABET, k=17)) for _ in range(2000)]
    planted = dict(_disguise(rng, nir) for nir in lake[:300])
    honest = ["".join(rng.choices(string.ascii_letters + string.digits + " -", k=rng.randint(1, 60)))
              for _ in range(300)] + [rng.randbytes(32).hex() for _ in range(100)]
    found = search({"planted": views(pl.Series(list(planted))), "honest": views(pl.Series(honest))}, pl.Series(lake))
    hits = found["planted"]
    for text, kind in planted.items():
        assert kind in set(hits.filter(pl.col("value") == text)["kind"]), (text, kind)
    assert "honest" not in found
