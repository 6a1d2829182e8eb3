"""Regenerate ccswitch_addon/core/prices_data.json from pydantic's genai-prices.

genai-prices cannot be a runtime dependency (its updater needs h11 >= 0.16, mitmproxy 11 pins
h11 <= 0.14), so its data ships as a generated file. This script installs the package into a
temporary directory (never into the running environment), reads its provider list there in
a child Python, and writes what our pricing needs: base URL patterns, model match clauses,
and the token prices (USD per million tokens, with tiers and dated changes).

    python scripts/refresh_prices.py [--version 0.2.5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PIP_INSTALL = (sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts")
OUT = Path(__file__).resolve().parent.parent / "ccswitch_addon" / "core" / "prices_data.json"

# Runs inside the temporary install: genai_prices objects → plain JSON on stdout.
_DUMP = r"""
import json, sys
from importlib.metadata import version
from genai_prices import data, types

KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")

def clause(c):
    if isinstance(c, types.ClauseOr):
        return {"or": [clause(x) for x in c.or_]}
    if isinstance(c, types.ClauseAnd):
        return {"and": [clause(x) for x in c.and_]}
    for kind in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(c, kind):
            return {kind: getattr(c, kind)}
    raise ValueError(f"unknown clause {c!r}")

def price(value):
    if isinstance(value, types.TieredPrices):
        tiers = [[t.start, float(t.price)] for t in value.tiers]
        return {"base": float(value.base), "tiers": tiers}
    return float(value)

def prices(mp):
    out = {}
    for key in KEYS:
        value = mp.__dict__.get(key)
        if value is not None:
            out[key.removesuffix("_mtok")] = price(value)
    return out

def model_prices(m):
    if isinstance(m.prices, types.ModelPrice):
        return [{"from": None, **prices(m.prices)}]
    listed = []
    for cp in m.prices:
        constraint = cp.constraint
        if constraint is not None and not isinstance(constraint, types.StartDateConstraint):
            continue  # time-of-day discounts: the standard price stands
        start = constraint.start_date.isoformat() if constraint is not None else None
        listed.append({"from": start, **prices(cp.prices)})
    return listed

providers = []
for p in data.providers:
    models = []
    for m in p.models:
        listed = [entry for entry in model_prices(m) if len(entry) > 1]
        if listed:
            models.append({"id": m.id, "match": clause(m.match), "prices": listed})
    providers.append({
        "id": p.id,
        "name": p.name,
        "api_pattern": p.api_pattern,
        "fallback": list(p.fallback_model_providers or ()),
        "model_match": clause(p.model_match) if p.model_match is not None else None,
        "models": models,
    })
json.dump({"source": "genai-prices " + version("genai_prices"), "providers": providers},
          sys.stdout, separators=(",", ":"))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="genai-prices version (default: the newest)")
    args = parser.parse_args()
    spec = f"genai-prices=={args.version}" if args.version else "genai-prices"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [*PIP_INSTALL, "--target", tmp, spec],
            check=True,
        )
        dumped = subprocess.run(
            [sys.executable, "-c", _DUMP],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"},
        ).stdout
    document = json.loads(dumped)
    # One provider per line: a refresh reads as a diff of the providers that changed.
    lines = [json.dumps(p, separators=(",", ":"), sort_keys=True) for p in document["providers"]]
    text = (
        '{"source":'
        + json.dumps(document["source"])
        + ',\n"providers":[\n'
        + ",\n".join(lines)
        + "\n]}\n"
    )
    OUT.write_text(text, encoding="utf-8")
    count = sum(len(p["models"]) for p in document["providers"])
    print(f"{OUT}: {document['source']}, {len(lines)} providers, {count} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
