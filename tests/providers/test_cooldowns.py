"""The cooldown keys (providers.cooldowns): the one format the gateway writes and support reads."""

import pytest

from core.redis import get_redis
from providers.cooldowns import cooldown_fails_key, cooldown_key, cooldown_parse, cooldowns_scan


def test_a_cooldown_key_reads_back_as_its_tenant_and_model():
    assert cooldown_key(3, 71) == "tg:cd:t3:pm71"
    assert cooldown_parse(cooldown_key(3, 71)) == (3, 71)
    assert cooldown_parse(cooldown_key(3, 71).encode()) == (3, 71)  # as redis-py answers it


@pytest.mark.parametrize("key", [cooldown_fails_key(3, 71), "tg:cd:t3", "tg:cd:tx:pm1", "tg:cd:t1:pm2:x",
                                 "tg:rl:t1:m5"])
def test_other_keys_are_not_cooldowns(key):
    assert cooldown_parse(key) is None


def test_the_scan_lists_each_flag_with_the_seconds_left():
    # given two flags, one with a TTL, and a failure counter that is not a flag
    client = get_redis()
    client.set(cooldown_key(1, 2), b"1", ex=30)
    client.set(cooldown_key(4, 5), b"1")
    client.set(cooldown_fails_key(1, 2), b"3", ex=30)
    try:
        # when they are scanned
        flags = sorted(cooldowns_scan(client), key=lambda f: f.tenant_id)
        # then each flag is there once, with its time left rounded up (-1: no TTL)
        assert [(f.tenant_id, f.provider_model_id) for f in flags] == [(1, 2), (4, 5)]
        assert 29 <= flags[0].seconds_left <= 30 and flags[1].seconds_left == -1
    finally:
        client.delete(cooldown_key(1, 2), cooldown_key(4, 5), cooldown_fails_key(1, 2))
