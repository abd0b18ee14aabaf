"""The offline model's tool use: with the example tools offered (add, multiply, current_time),
a query that asks for arithmetic or the time is answered by deterministic tool calls, then by a
text that quotes their results — so the agent loop shows several steps with no model at all.

"add 2 and 3, then multiply the result by 4" takes three turns (add; multiply with add's
result; the answer); "what is 2 plus 3 and 6 times 7" calls both tools at once in one turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

_NUMBER = r"-?\d+(?:\.\d+)?"
_OPERAND = rf"({_NUMBER}|the result|that|it)"
# Each pattern: the tool, then a regex whose groups are the two operands.
_OPERATIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("add", re.compile(rf"\b(?:add|sum of)\s+{_OPERAND}\s+(?:and|to|plus)\s+{_OPERAND}")),
    ("add", re.compile(rf"{_OPERAND}\s*(?:\bplus\b|\+)\s*{_OPERAND}")),
    ("multiply", re.compile(rf"\bmultiply\s+{_OPERAND}\s+(?:by|and|with)\s+{_OPERAND}")),
    ("multiply", re.compile(rf"{_OPERAND}\s*(?:\btimes\b|\*|×)\s*{_OPERAND}")),
)
_TIME = re.compile(r"\btime is it\b|\bcurrent time\b|\bwhat(?:'s| is) the time\b")


@dataclass(frozen=True)
class Operation:
    tool: str
    operands: tuple[str, ...]  # numbers as text, or "" for the previous operation's result
    at: int  # where in the query it was asked for

    @property
    def uses_previous(self) -> bool:
        return "" in self.operands


def operations(query: str) -> list[Operation]:
    """The tool calls a query asks for, in the order it asks for them."""
    text = query.lower()
    found: list[Operation] = []
    taken: list[range] = []
    for tool, pattern in _OPERATIONS:
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < other.stop and other.start < span.stop for other in taken):
                continue
            taken.append(span)
            operands = tuple(
                value if re.fullmatch(_NUMBER, value) else "" for value in match.groups()
            )
            found.append(Operation(tool, operands, match.start()))
    time = _TIME.search(text)
    if time is not None:
        found.append(Operation("current_time", (), time.start()))
    return sorted(found, key=lambda operation: operation.at)


def next_calls(
    query: str, results: Sequence[str], offered: set[str]
) -> list[tuple[str, str]] | None:
    """The (tool, JSON arguments) to call next, given the results of the calls made so far;
    [] when every call is made (time to answer); None if the query asks for no tool offered."""
    wanted = operations(query)
    if not wanted or any(operation.tool not in offered for operation in wanted):
        return None
    pending = wanted[len(results) :]
    if not pending:
        return []
    batch = [pending[0]]
    for operation in pending[1:]:
        if operation.uses_previous:
            break  # needs the result of the call before it: the next turn
        batch.append(operation)
    previous = results[-1] if results else "0"
    return [(operation.tool, _arguments(operation, previous)) for operation in batch]


def _arguments(operation: Operation, previous: str) -> str:
    if operation.tool == "current_time":
        return json.dumps({"timezone": "UTC"})
    a, b = (_plain(float(value or _number(previous))) for value in operation.operands)
    return json.dumps({"a": a, "b": b})


def _plain(number: float) -> float:
    """2.0 as 2: the arguments read as the query wrote them."""
    return int(number) if number.is_integer() else number


def _number(text: str) -> str:
    match = re.search(_NUMBER, text)
    return match.group(0) if match else "0"


def summary(calls: Sequence[tuple[str, str]], results: Sequence[str]) -> str:
    """The offline model's answer after its tool calls, quoting each call and result."""
    lines = [
        f"- {tool}({', '.join(f'{k}={v}' for k, v in json.loads(arguments).items())}) → {result}"
        for (tool, arguments), result in zip(calls, results, strict=False)
    ]
    return "[offline model] I called the example tools:\n" + "\n".join(lines)


_APPROVAL = re.compile(r"\bapprov(?:al|e|es|ed)\b")


def asks_approval(query: str) -> bool:
    """Whether the query asks for a person's approval ("… with approval", "approve …")."""
    return _APPROVAL.search(query.lower()) is not None


def approval_answer(decision_text: str, then: str) -> str:
    """The offline model's answer once its request_approval call has a result: `then` when
    approved, else that it stopped."""
    try:
        decision = json.loads(decision_text)
    except ValueError:
        decision = {}
    if not isinstance(decision, dict):
        decision = {}
    by = f" by {decision['by']}" if decision.get("by") else ""
    comment = f" ({decision['comment']})" if decision.get("comment") else ""
    if decision.get("approved") is True:
        return f"[offline model] Approved{by}{comment}. Going ahead.\n\n{then}"
    if decision.get("timed_out"):
        return "[offline model] Nobody approved in time, so I did not go ahead."
    return f"[offline model] Rejected{by}{comment}, so I did not go ahead."
