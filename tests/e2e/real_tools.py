"""A real tool through mitmdump with ccswitch, on a loopback fake of another format that plays
one call of the tool's own file-reading tool, then answers in text. By hand, not in the suite:

    npm install --prefix DIR @anthropic-ai/claude-code @openai/codex @google/gemini-cli
    CCSWITCH_CLIS=DIR/node_modules/.bin python tests/e2e/real_tools.py TOOL FORMAT [CODEX ARGS]

TOOL is claude, codex or gemini; FORMAT the provider's (openai_chat, openai_responses,
anthropic, gemini). It prints what the fake saw (the tool call made, whether the file's
content came back in the tool's result) and the tool's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.fakes import FakeProvider, chat_tool_call, ok_json, ok_sse
from e2e.fakes_tools import tool_call
from e2e.proxy import Proxy

BIN = Path(os.environ.get("CCSWITCH_CLIS", "node_modules/.bin"))
WORK = Path(tempfile.mkdtemp(prefix="ccswitch-tools-"))
FILE = WORK / "a.txt"
FILE.write_text("zebra is the first word\n")


class Smart:
    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.log: list[str] = []

    def run(self, h, received):  # type: ignore[no-untyped-def]
        text = received.body.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        streamed = (
            "streamGenerateContent" in received.path
            if self.fmt == "gemini"
            else bool(body.get("stream"))
        )
        json_mode = (
            "response_format" in body
            or "Reply with only a JSON" in json.dumps(body.get("system", ""))
            or "responseMimeType" in text
            or '"format": {"type": "json' in text
        )
        result = any(
            k in text
            for k in (
                '"role":"tool"',
                '"role": "tool"',
                '"tool_result"',
                "function_call_output",
                "functionResponse",
            )
        )
        names = json.dumps(body.get("tools", ""))
        self.log.append(f"{received.path} stream={streamed} json={json_mode} result={result}")
        if json_mode:
            self.log.append(
                "  schema: " + json.dumps(body.get("response_format") or body.get("system"))[:900]
            )
            answer = '{"complexity_reasoning": "a simple read", "complexity_score": 10}'
            if "model_choice" in text:
                answer = '{"reasoning": "simple", "model_choice": "flash"}'
            reply = ok_json(self.fmt, text=answer)
            return reply.run(h, received)
        if result or not body.get("tools"):
            self.log.append("  result: " + (("zebra" in text and "has zebra") or "NO zebra"))
            reply = ok_sse(self.fmt, events=3) if streamed else ok_json(self.fmt, text="done")
            return reply.run(h, received)
        if "functions__exec" in names:
            name = "functions__exec"
            script = f'const r = await tools.exec_command({{cmd: "cat {FILE}"}});'
            args = {"input": script + " text(r.output);"}
        elif "exec_command" in names:
            name, args = "exec_command", {"cmd": f"cat {FILE}"}
        elif '"Read"' in names:
            name, args = "Read", {"file_path": str(FILE)}
        elif "read_file" in names:
            name, args = "read_file", {"file_path": str(FILE)}
        else:
            name, args = "shell", {"command": ["cat", str(FILE)]}
        self.log.append(f"  tool call {name}")
        if self.fmt == "openai_chat":
            return chat_tool_call(name, args, text="").run(h, received)
        return tool_call(self.fmt, name, args, text="").run(h, received)


def main() -> int:
    tool, fmt = sys.argv[1], sys.argv[2]
    fake = FakeProvider(fmt).start()
    smart = Smart(fmt)
    fake.default = smart  # type: ignore[assignment]
    app = {"claude": "claude", "codex": "codex", "gemini": "gemini"}[tool]
    base = "/v1" if fmt in ("openai_chat", "openai_responses") else ""
    config = f"""\
apps:
  {app}:
    queue: [p]
    providers:
      p:
        base_url: "{fake.url}{base}"
        format: {fmt}
        api_key: sk-fake-0123456789
        models: {{"*": "provider-model"}}
"""
    tmp = Path(tempfile.mkdtemp(prefix="handrun-"))
    proxy = Proxy(tmp, config).start()
    try:
        return run(tool, fmt, tmp, proxy, smart)
    finally:
        proxy.stop()
        fake.stop()


def run(tool, fmt, tmp, proxy, smart):  # type: ignore[no-untyped-def]
    home = tmp / "userhome"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}",
        "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
        "NO_PROXY": "",
        "NODE_EXTRA_CA_CERTS": str(proxy.ca_path),
        "SSL_CERT_FILE": str(proxy.ca_path),
        "CODEX_CA_CERTIFICATE": str(proxy.ca_path),
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "OPENAI_API_KEY": "sk-fake",
        "GEMINI_API_KEY": "fake",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CODEX_HOME": str(home / ".codex"),
        "TERM": "dumb",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
    }
    (home / ".codex").mkdir()
    prompt = f"Read the file {FILE} and tell me its first word."
    command = {
        "claude": [str(BIN / "claude"), "-p", prompt, "--allowedTools", "Read"],
        "codex": [
            str(BIN / "codex"),
            "exec",
            "--skip-git-repo-check",
            "-s",
            "read-only",
            *sys.argv[3:],
            prompt,
        ],
        "gemini": [str(BIN / "gemini"), "-p", prompt, "--yolo"],
    }[tool]
    t0 = time.time()
    try:
        done = subprocess.run(command, env=env, cwd=WORK, capture_output=True, timeout=240)
        out = done.stdout.decode("utf-8", "replace")[-1500:]
        err = done.stderr.decode("utf-8", "replace")[-1500:]
        code = done.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")[-1500:]
        err = (e.stderr or b"").decode("utf-8", "replace")[-1500:]
        code = "timeout"
    print(f"== {tool} on {fmt}: exit {code} in {time.time() - t0:.0f}s")
    print("-- fake saw:")
    print("\n".join(smart.log))
    print("-- stdout:", out)
    print("-- stderr:", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
