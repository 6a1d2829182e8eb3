"""Run the user's notification command for a switch event, off the event loop."""

from __future__ import annotations

import json
import logging
import subprocess
import threading

from ccswitch_addon.core.switch import SwitchEvent

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


class Notifier:
    """``ccswitch_notify``: a shell command that gets each event as JSON on its stdin."""

    def __init__(self, command: str, timeout: float = 10.0) -> None:
        self.command = command
        self.timeout = timeout

    def __call__(self, event: SwitchEvent) -> None:
        if self.command:
            payload = json.dumps(event.to_json()).encode()
            threading.Thread(
                target=self._run, args=(payload,), name="ccswitch-notify", daemon=True
            ).start()

    def _run(self, payload: bytes) -> None:
        try:
            result = subprocess.run(
                self.command,
                shell=True,
                input=payload,
                timeout=self.timeout,
                capture_output=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            logger.warning(
                "ccswitch_notify: %r took longer than %gs and was stopped",
                self.command,
                self.timeout,
            )
            return
        except OSError as e:
            logger.warning("ccswitch_notify: %r could not run: %s", self.command, e)
            return
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()[:300]
            logger.warning(
                "ccswitch_notify: %r exited with %d: %s", self.command, result.returncode, detail
            )
