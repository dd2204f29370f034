"""The bench's peer: the same duet held by AutoGen AgentChat, for `duologue bench` to time.

AutoGen (the `bench` extra) pins a protobuf that LangGraph's server does not accept, so it
may live in a venv of its own: this file imports nothing of duologue's, and the bench runs
it with whichever interpreter has AutoGen (graphs/commands/bench.py, peer_python):

    PYTHON graphs/commands/bench_autogen.py < SCRIPT.json     # prints one JSON line
    PYTHON graphs/commands/bench_autogen.py --check           # {"missing": null} when AutoGen is there

SCRIPT.json carries what the bench's raw loop sends (url, models, options, system prompts,
topic, turns), so both loops send the same requests' content to the same instant server. A
RoundRobinGroupChat of two streaming AssistantAgents holds it; a turn's time is from the end of
the previous agent message to the end of this one, the first counted from the task's start.
AutoGen keeps the dialogue in memory only: nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

MODEL_INFO = {
    "vision": False,
    "function_calling": False,
    "json_output": False,
    "structured_output": False,
    "family": "unknown",
}


def missing() -> str | None:
    """Why AutoGen cannot be imported here, else None."""
    try:
        import autogen_agentchat  # noqa: F401
        import autogen_ext.models.ollama  # noqa: F401
    except ImportError as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None


async def hold(script: dict[str, Any]) -> dict[str, Any]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.messages import TextMessage
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.ollama import OllamaChatCompletionClient

    clients = []
    agents = []
    for name in script["order"]:
        client = OllamaChatCompletionClient(
            model=script["models"][name],
            host=script["url"],
            options=script["options"][name],
            model_info=MODEL_INFO,
        )
        clients.append(client)
        agents.append(
            AssistantAgent(
                name, model_client=client, system_message=script["system"][name], model_client_stream=True
            )
        )
    team = RoundRobinGroupChat(agents, max_turns=script["turns"])
    ends: list[float] = []
    started = time.perf_counter()
    async for event in team.run_stream(task=script["topic"]):
        if isinstance(event, TextMessage) and event.source in script["models"]:
            ends.append(time.perf_counter())
        elif isinstance(event, TaskResult):
            break
    wall = time.perf_counter() - started
    for client in clients:
        await client.close()
    starts = [started, *ends[:-1]]
    return {"wall_s": wall, "turn_s": [end - start for start, end in zip(starts, ends, strict=True)]}


def main() -> int:
    why = missing()
    if why is not None or sys.argv[1:] == ["--check"]:
        print(json.dumps({"missing": why}))
        return 0
    script = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(hold(script))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
