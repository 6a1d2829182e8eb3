"""Talking to a running proxy's control host (http://ccswitch.local) through the proxy.

A request that changes state carries the proxy's per-process token, asked for first with
``GET /token`` (which no other site's page can read; see web/control.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["DEFAULT_PROXY", "NotCcswitch", "ProxyUnavailable", "call", "excerpt"]

DEFAULT_PROXY = "http://127.0.0.1:8080"
CONTROL_URL = "http://ccswitch.local"
TOKEN_HEADER = "x-ccswitch-token"  # as web/control.py reads it


class ProxyUnavailable(Exception):
    """No ccswitch proxy answers at that address."""


class NotCcswitch(ProxyUnavailable):
    """Something answers at that address, but not ccswitch."""


def excerpt(answer: Any) -> str:
    """The start of a foreign server's JSON answer, for saying what answered."""
    text = json.dumps(answer)
    return text if len(text) <= 80 else text[:77] + "..."


def call(
    proxy: str, method: str, path: str, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """(HTTP status, parsed JSON) of a control request sent through the proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    headers = {"content-type": "application/json"}
    if method != "GET":
        code, answer = call(proxy, "GET", "/token", timeout=timeout)
        if not isinstance(answer, dict) or ("token" if code == 200 else "error") not in answer:
            # ccswitch answers a token or {"error": …}; anything else is another server
            raise NotCcswitch(f"no ccswitch at {proxy} (it answered {code}: {excerpt(answer)})")
        if code != 200:
            return code, answer
        headers[TOKEN_HEADER] = str(answer["token"])
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{CONTROL_URL}{path}", data=data, method=method, headers=headers
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            raise NotCcswitch(f"no ccswitch at {proxy} (it answered {e.code}, not JSON)") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ProxyUnavailable(f"no proxy answers at {proxy} ({reason})") from None
    except ValueError:
        raise NotCcswitch(
            f"no ccswitch at {proxy} (it answered, but not with JSON; is the addon loaded?)"
        ) from None
