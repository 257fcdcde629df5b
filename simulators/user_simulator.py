"""The user simulator: a persona with a hidden goal, revealed gradually, ending with a stop marker.

Guards keep the simulated user a user: an empty turn is re-asked once, then ends the episode; a turn
where it plays the assistant (tool-call markup, "Assistant:" prefixes) is re-asked once, then ends;
a stop before the agent has answered anything is treated as a premature stop and re-asked once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from synth.llm.client import ChatClient
from synth.records import Message, Task, Usage

STOP_MARKER = "###STOP###"
_ROLE_CONFUSION = re.compile(r"^\s*(assistant|agent|system)\s*:|<\|tool_call|\"tool_calls\"", re.IGNORECASE)


@dataclass
class UserTurn:
    content: str | None
    stop: bool
    usage: Usage = field(default_factory=Usage)
    problem: str | None = None


class UserSimulator:
    def __init__(self, client: ChatClient) -> None:
        self._client = client

    def system_prompt(self, task: Task) -> str:
        persona = task.persona
        details = json.dumps(_details(task), ensure_ascii=False)
        return "\n".join(
            [
                "You are simulating a human user talking to an AI assistant. Stay in the user's role: never "
                "act as the assistant and never call tools.",
                f"Persona: {persona.name}; style {persona.style}; expertise {persona.expertise}; patience "
                f"{persona.patience}; verbosity {persona.verbosity}; write in language {persona.language}.",
                f"Goal: {task.user_goal}",
                "Reveal details only when the assistant asks for them, a few at a time.",
                f"Details: {details}",
                f"When your goal is met, or cannot be met, reply with a short closing line ending in {STOP_MARKER}.",
            ]
        )

    async def next_turn(self, task: Task, conversation: list[Message], *, seed: int) -> UserTurn:
        """The user's reply to the agent's latest message. `conversation` is the agent's view."""
        messages = [Message(role="system", content=self.system_prompt(task)), *_flip(conversation)]
        spent = Usage()
        problem = ""
        for attempt in range(2):
            # A failed call (ModelCallError) propagates: the endpoint failed, not the user's turn.
            result = await self._client.chat("user", messages, seed=seed + attempt)
            spent = spent.add(result.usage)
            text = (result.message.content or "").strip()
            stop = STOP_MARKER in text
            text = text.replace(STOP_MARKER, "").strip()
            if result.message.tool_calls or _ROLE_CONFUSION.search(text):
                problem = "role confusion: the simulated user acted as the assistant"
            elif stop and not any(m.role == "assistant" and m.content for m in conversation):
                problem = "premature stop: the user ended before the assistant answered"
            elif not text and not stop:
                problem = "empty user turn"
            else:
                return UserTurn(text or None, stop, spent)
            messages = [*messages, Message(role="user", content=f"(Reminder: {problem}. Reply as the user.)")]
        return UserTurn(None, True, spent, problem)


def _details(task: Task) -> dict[str, str]:
    return {str(k): str(v) for k, v in task.user_details.items()}


def _flip(conversation: list[Message]) -> list[Message]:
    """The agent's conversation as the user model sees it: roles swapped, tool traffic left out."""
    flipped = []
    for message in conversation:
        if message.role == "user" and message.content:
            flipped.append(Message(role="assistant", content=message.content))
        elif message.role == "assistant" and message.content:
            flipped.append(Message(role="user", content=message.content))
    return flipped
