import hashlib
import hmac
import json
import sys

COLUMNS = ("seq", "run", "ts", "machine", "step", "kind", "from_state", "to_state",
           "host", "command", "rc", "output", "result", "prev_hash", "mono", "boot")
PURPOSE = b"openstack-upgrade journal mac v1"


def event_hash(event):
    row = {c: event.get(c) for c in COLUMNS}
    if row["result"] is not None:                    # stored as text: re-encode as the journal did
        row["result"] = json.dumps(row["result"], sort_keys=True)
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def mac_key(key_file):
    """HKDF-SHA256 (RFC 5869) of the vault key, no salt, info PURPOSE: the journal's MAC key."""
    with open(key_file, "rb") as f:
        data = f.read()
    text = data.strip()
    vault_key = data if len(data) == 32 else bytes.fromhex(text.decode())
    prk = hmac.new(b"\0" * 32, vault_key, hashlib.sha256).digest()
    return hmac.new(prk, PURPOSE + b"\x01", hashlib.sha256).digest()


def verify(path, key=None):
    prev = seq = None
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if prev is None:                         # genesis, or where a one-run export begins
                prev = "0" * 64 if e["seq"] == 1 else e["prev_hash"]
            elif e["seq"] != seq + 1:
                return f"BROKEN at seq {e['seq']}: expected seq {seq + 1} (a row was removed)"
            if e["prev_hash"] != prev:
                return f"BROKEN at seq {e['seq']}: prev_hash does not match (rows removed or reordered)"
            if event_hash(e) != e["hash"]:
                return f"BROKEN at seq {e['seq']}: content does not match its hash (row edited)"
            if key is not None:
                mac = hmac.new(key, b"event:" + e["hash"].encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(mac, e.get("mac") or ""):
                    return f"BROKEN at seq {e['seq']}: its MAC does not match (written without the key)"
            prev, seq, count = e["hash"], e["seq"], count + 1
    if key is None:
        return f"OK: {count} events, chain intact, last hash {prev} (not authenticated: no key given)"
    return f"OK: {count} events, chain intact, every MAC authenticated, last hash {prev}"


if __name__ == "__main__":
    verdict = verify(sys.argv[1], mac_key(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(verdict)
    sys.exit(0 if verdict.startswith("OK") else 1)
