"""The generated service secrets' provider: strong values, made once, replaced only when the length changes."""

from __future__ import annotations

import re

from infra.generated_secret import GeneratedSecretProvider


def test_create_makes_a_fresh_alphanumeric_value_of_the_length():
    provider = GeneratedSecretProvider()
    made = [provider.create({"length": 40}) for _ in range(3)]
    values = [m.outs["result"] for m in made]
    assert all(re.fullmatch(r"[A-Za-z0-9]{40}", v) for v in values)
    assert len(set(values)) == 3 and len({m.id for m in made}) == 3


def test_check_refuses_a_weak_or_odd_length():
    provider = GeneratedSecretProvider()
    assert provider.check({}, {"length": 40}).failures == []
    assert provider.check({}, {"length": 40.0}).failures == []  # how the engine's gRPC carries numbers
    for bad in (8, 1000, 40.5, "40", True, None):
        (failure,) = provider.check({}, {"length": bad}).failures
        assert failure.property == "length" and "16..256" in failure.reason


def test_unchanged_length_diffs_empty_and_a_new_length_replaces():
    provider = GeneratedSecretProvider()
    outs = provider.create({"length": 40}).outs
    same = provider.diff("x", outs, {"length": 40.0, "result": None})
    assert same.changes is False and same.replaces == []
    longer = provider.diff("x", outs, {"length": 48, "result": None})
    assert longer.changes is True and longer.replaces == ["length"]


def test_a_fernet_secret_is_a_fernet_key_and_old_state_keeps_its_value():
    from cryptography.fernet import Fernet

    provider = GeneratedSecretProvider()
    assert provider.check({}, {"length": 44, "format": "fernet"}).failures == []
    (bad,) = provider.check({}, {"length": 40, "format": "fernet"}).failures
    assert bad.property == "length"
    (bad,) = provider.check({}, {"length": 40, "format": "hex"}).failures
    assert bad.property == "format"
    outs = provider.create({"length": 44, "format": "fernet"}).outs
    Fernet(outs["result"].encode())  # raises unless 32 url-safe base64 bytes
    assert outs["format"] == "fernet"
    # State written before formats existed is alphanumeric: the same secret, no replacement.
    old = {"length": 40, "result": "x" * 40}
    assert provider.diff("x", old, {"length": 40, "format": "alphanumeric", "result": None}).changes is False
    changed = provider.diff("x", old, {"length": 44, "format": "fernet", "result": None})
    assert changed.changes is True and set(changed.replaces) == {"length", "format"}
