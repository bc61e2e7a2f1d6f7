"""The chat stream reader: one block open at a time, in order, nothing lost, whatever the upstream interleaves."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anygate.wire.chat_stream import DELTA, START, STOP, TEXT, THINKING, TOOL, ChatStreamReader, Op, event_payload


def text(value: str) -> dict[str, Any]:
    return {"content": value}


def thinking(value: str) -> dict[str, Any]:
    return {"reasoning_content": value}


def tool(index: int | None, arguments: str = "", call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call["id"] = call_id
    if name is not None:
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def read_all(deltas: list[dict[str, Any]]) -> list[Op]:
    reader = ChatStreamReader()
    ops: list[Op] = []
    for delta in deltas:
        ops.extend(reader.read({"choices": [{"index": 0, "delta": delta}]}))
    return ops + reader.close()


def summary(ops: list[Op]) -> list[tuple[str, str | None, str]]:
    """(kind, tool id, everything its deltas carried) per block, in output order."""
    blocks: dict[int, list[Any]] = {}
    for action, block, value in ops:
        if action == START:
            blocks[block.index] = [block.kind, block.call_id, ""]
        elif action == DELTA:
            blocks[block.index][2] += value
    return [tuple(blocks[index]) for index in sorted(blocks)]  # type: ignore[misc]


def assert_well_formed(ops: list[Op]) -> None:
    """Blocks start in index order, one at a time; deltas go to the open block; every block stops once."""
    open_index = None
    started = 0
    for action, block, _ in ops:
        if action == START:
            assert open_index is None and block.index == started
            open_index, started = block.index, started + 1
        elif action == DELTA:
            assert block.index == open_index
        else:
            assert action == STOP and block.index == open_index
            open_index = None
    assert open_index is None


CASES: list[tuple[str, list[dict[str, Any]], list[tuple[str, str | None, str]]]] = [
    ("text", [text("Hel"), text("lo")], [(TEXT, None, "Hello")]),
    ("thinking then text", [thinking("hm"), text("ok")], [(THINKING, None, "hm"), (TEXT, None, "ok")]),
    (
        "text after a tool call is a new block",
        [text("a"), tool(0, '{"x":1}', "c1", "f"), text("b")],
        [(TEXT, None, "a"), (TOOL, "c1", '{"x":1}'), (TEXT, None, "b")],
    ),
    (
        "text while a call's arguments are unfinished waits for them",
        [tool(0, '{"x":', "c1", "f"), text("b"), tool(0, "1}")],
        [(TOOL, "c1", '{"x":1}'), (TEXT, None, "b")],
    ),
    (
        "interleaved parallel calls",
        [tool(0, '{"a":', "c1", "f"), tool(1, '{"b":', "c2", "g"), tool(0, "1}"), tool(1, "2}")],
        [(TOOL, "c1", '{"a":1}'), (TOOL, "c2", '{"b":2}')],
    ),
    (
        "one index reused with new ids",
        [tool(0, "{}", "c1", "f"), tool(0, '{"n":2}', "c2", "f")],
        [(TOOL, "c1", "{}"), (TOOL, "c2", '{"n":2}')],
    ),
    (
        "the id repeated on every fragment",
        [tool(0, '{"a"', "c1", "f"), tool(0, ":1}", "c1")],
        [(TOOL, "c1", '{"a":1}')],
    ),
    (
        "calls without an index, told apart by id",
        [tool(None, '{"a":1}', "c1", "f"), tool(None, '{"b":', "c2", "g"), tool(None, "2}")],
        [(TOOL, "c1", '{"a":1}'), (TOOL, "c2", '{"b":2}')],
    ),
    (
        "indexes from 1",
        [tool(1, "{}", "c1", "f"), tool(2, "{}", "c2", "g")],
        [(TOOL, "c1", "{}"), (TOOL, "c2", "{}")],
    ),
    (
        "the name after the id",
        [text("x"), tool(0, "", "c1"), tool(0, "{}", None, "f")],
        [(TEXT, None, "x"), (TOOL, "c1", "{}")],
    ),
    ("a call that never gets a name still comes out", [tool(0, "{}", "c1")], [(TOOL, "c1", "{}")]),
    ("a call without an id", [tool(0, "{}", None, "f")], [(TOOL, None, "{}")]),
    (
        "arguments as an object",
        [{"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}],
        [(TOOL, "c", '{"a":1}')],
    ),
    ("empty and null deltas", [text(""), {"content": None, "tool_calls": []}, {}, text("x")], [(TEXT, None, "x")]),
    ("reasoning under both names counts once", [{"reasoning_content": "r", "reasoning": "r"}], [(THINKING, None, "r")]),
]


@pytest.mark.parametrize(("deltas", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_deltas_become_blocks(deltas: list[dict[str, Any]], expected: list[tuple[str, str | None, str]]) -> None:
    ops = read_all(deltas)
    assert_well_formed(ops)
    assert summary(ops) == expected


def test_finish_reason_usage_and_error_are_kept() -> None:
    reader = ChatStreamReader()
    reader.read({"choices": [{"index": 0, "delta": {}, "finish_reason": "length", "stop_reason": "END"}]})
    reader.read({"choices": [], "usage": {"prompt_tokens": 3}})
    reader.read({"choices": [], "usage": {}})  # an empty usage does not replace a real one
    assert (reader.finish_reason, reader.matched_stop, reader.usage) == ("length", "END", {"prompt_tokens": 3})
    reader.read({"error": {"message": "boom"}})
    assert reader.error == {"message": "boom"}


def test_other_choices_are_ignored() -> None:
    reader = ChatStreamReader()
    ops = reader.read(
        {"choices": [{"index": 1, "delta": {"content": "second"}}, {"index": 0, "delta": {"content": "first"}}]}
    )
    assert summary(ops + reader.close()) == [(TEXT, None, "first")]


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        (b'data: {"a":1}\n\n', b'{"a":1}'),
        (b'data:{"a":1}\n\n', b'{"a":1}'),
        (b'data: {"a":1}\r\n\r\n', b'{"a":1}'),
        (b'event: chunk\ndata: {"a":1}\n\n', b'{"a":1}'),
        (b"data: [DONE]\n\n", b"[DONE]"),
        (b": keep-alive\n\n", None),
        (b"\n\n", None),
    ],
)
def test_event_payload(event: bytes, payload: bytes | None) -> None:
    assert event_payload(event) == payload


# ------------------------------------------------------------------ any interleaving: well formed and lossless

FRAGMENT_TEXT = st.text(alphabet="ab {}", min_size=1, max_size=4)


@st.composite
def interleaved_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, str]]:
    """Deltas of text, reasoning and up to three tool calls, interleaved at random. Each call's arguments
    are JSON that is complete only with its last fragment (as a model writes them)."""
    calls = draw(st.integers(min_value=0, max_value=3))
    queues: dict[str, list[dict[str, Any]]] = {}
    expected_calls: dict[str, str] = {}
    for number in range(calls):
        value = draw(st.text(alphabet="xyz", max_size=6))
        arguments = '{"v": "' + value + '"}'
        cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(arguments) - 1), max_size=4)))
        pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
        call_id = f"call_{number}"
        queues[call_id] = [tool(number, pieces[0], call_id, f"f{number}")] + [
            tool(number, piece) for piece in pieces[1:]
        ]
        expected_calls[call_id] = arguments
    texts = draw(st.lists(st.tuples(st.sampled_from([TEXT, THINKING]), FRAGMENT_TEXT), max_size=6))
    queues["content"] = [text(value) if kind == TEXT else thinking(value) for kind, value in texts]
    deltas: list[dict[str, Any]] = []
    while any(queues.values()):
        source = draw(st.sampled_from(sorted(name for name, queue in queues.items() if queue)))
        deltas.append(queues[source].pop(0))
    streamed = {
        TEXT: "".join(v for k, v in texts if k == TEXT),
        THINKING: "".join(v for k, v in texts if k == THINKING),
    }
    return deltas, expected_calls, streamed


@settings(max_examples=200, deadline=None)
@given(stream=interleaved_streams())
def test_any_interleaving_is_well_formed_and_loses_nothing(
    stream: tuple[list[dict[str, Any]], dict[str, str], dict[str, str]],
) -> None:
    deltas, calls, streamed = stream
    ops = read_all(deltas)
    assert_well_formed(ops)
    blocks = summary(ops)
    assert {call_id: arguments for kind, call_id, arguments in blocks if kind == TOOL} == calls
    for kind in (TEXT, THINKING):
        assert "".join(value for block_kind, _, value in blocks if block_kind == kind) == streamed[kind]
