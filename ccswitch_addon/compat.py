"""Where mitmproxy 11 and 12 differ, the one form the addon uses.

mitmproxy 12's ``asyncio_utils.create_task`` requires ``keep_ref`` and 11's does not accept it.
The addon's tasks are made here instead: a reference is kept until each is done (the event loop
holds only weak ones), and mitmproxy's debug info, the same function in both, names the task in
its ``--set`` debug dumps. Nothing else asks which mitmproxy runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from mitmproxy.utils import asyncio_utils

__all__ = ["create_task"]

_RUNNING: set[asyncio.Task[Any]] = set()


def create_task(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """A task on the running loop, named for mitmproxy, kept alive until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    asyncio_utils.set_task_debug_info(task, name=name)
    if not task.done():
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
    return task
