"""A do-nothing addon with the ccswitch addon's hooks, to price mitmproxy's share of the overhead.

``mitmdump -s bench/null_addon.py``: the same hooks (request, responseheaders, async response,
error) doing nothing, so the difference to bare mitmdump is mitmproxy dispatching them.
With BENCH_NULL_STREAM=1 it also streams each response (``response.stream = True``) as the
addon does for every success, which prices mitmproxy's streaming path.
"""

import os

from mitmproxy import http  # noqa: TID251 - a benchmark stand-in for the addon

STREAM = os.environ.get("BENCH_NULL_STREAM") == "1"


class NullHooks:
    def request(self, flow: http.HTTPFlow) -> None:
        pass

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if STREAM and flow.response is not None:
            flow.response.stream = True

    async def response(self, flow: http.HTTPFlow) -> None:
        pass

    def error(self, flow: http.HTTPFlow) -> None:
        pass


addons = [NullHooks()]
