"""Only the top-level ``model`` changes; every other byte is the client's."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.api.http import GUARDED_MEMBERS, ONE_PASS_BODY, refuse_duplicate_members
from anygate.errors import InvalidRequest
from anygate.wire.members import add_members, replace_model

CASES = [
    (b'{"model":"groq/llama","messages":[]}', b'{"model":"llama","messages":[]}'),
    (b'{ "messages" : [ ] ,\n  "model" :  "groq/llama" }', b'{ "messages" : [ ] ,\n  "model" :  "llama" }'),
    # the same member name nested first: only the top-level one changes
    (
        b'{"metadata":{"model":"groq/llama"},"model":"groq/llama"}',
        b'{"metadata":{"model":"groq/llama"},"model":"llama"}',
    ),
    # escapes in the original value are matched by meaning
    (b'{"model":"groq\\/llama","n":1e0}', b'{"model":"llama","n":1e0}'),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_only_the_top_level_model_is_rewritten(body: bytes, expected: bytes) -> None:
    assert replace_model(body, orjson.loads(body), "llama") == expected


def test_a_model_inside_a_string_is_left_alone() -> None:
    body = b'{"messages":[{"role":"user","content":"say \\"model\\": \\"groq/llama\\""}],"model":"groq/llama"}'
    rewritten = replace_model(body, orjson.loads(body), "llama")
    assert orjson.loads(rewritten)["messages"] == orjson.loads(body)["messages"]
    assert orjson.loads(rewritten)["model"] == "llama"


@given(
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "model"), st.text(max_size=20), max_size=4),
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)
def test_any_body_keeps_its_other_members(extra: dict[str, str], original: str, target: str) -> None:
    body = orjson.dumps({**extra, "model": original, "meta": {"model": original}})
    rewritten = orjson.loads(replace_model(body, orjson.loads(body), target))
    assert rewritten == {**extra, "model": target, "meta": {"model": original}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{ "model": "m", "stream": true }',
            b'{"stream_options":{"include_usage":true}, "model": "m", "stream": true }',
        ),
        (b"{}", b'{"stream_options":{"include_usage":true}}'),
        (b"  { }", b'  {"stream_options":{"include_usage":true} }'),
    ],
)
def test_new_members_are_added_without_touching_the_rest(body: bytes, expected: bytes) -> None:
    members = {"stream_options": {"include_usage": True}}
    assert add_members(body, orjson.loads(body), members) == expected


def test_a_member_the_body_has_is_replaced() -> None:
    body = b'{"model":"m","max_tokens":900}'
    rewritten = add_members(body, orjson.loads(body), {"max_tokens": 100})
    assert orjson.loads(rewritten) == {"model": "m", "max_tokens": 100}


def test_an_escaped_top_level_key_is_never_confused_with_a_nested_one() -> None:
    body = b'{"mod\\u0065l": "a", "metadata": {"model": "a"}}'
    payload = orjson.loads(body)
    rewritten = orjson.loads(replace_model(body, payload, "b"))
    assert rewritten == {"model": "b", "metadata": {"model": "a"}}


@pytest.mark.parametrize("key", [b"mod\\u0065l", b"\\u006Dodel", b"\\u006d\\u006f\\u0064\\u0065\\u006c"])
def test_a_key_spelt_with_escaped_letters_beside_escaped_text_is_never_confused_with_a_nested_one(
    key: bytes,
) -> None:
    body = b'{"' + key + b'": "a", "metadata": {"model": "a"}, "note": "caf\\u00e9 \\u4e2d"}'
    payload = orjson.loads(body)
    assert payload["model"] == "a"
    rewritten = orjson.loads(replace_model(body, payload, "b"))
    assert rewritten == {**payload, "model": "b"}


def test_non_ascii_text_written_as_escapes_keeps_every_other_byte() -> None:
    # What ``json.dumps`` writes by default (ensure_ascii): every accent and CJK character an escape, none
    # of them a letter of a member's name. The one "model" is the key: its value changes, nothing else.
    body = b'{"messages":[{"role":"user","content":"caf\\u00e9 \\u4e2d\\u6587 \\"quoted\\""}],"model":"groq/llama"}'
    assert replace_model(body, orjson.loads(body), "llama") == body.replace(b'"groq/llama"', b'"llama"')


SOLE_CASES = [
    (b'{"messages":[{"role":"user","content":"say \\"model\\""}],"model":"groq/llama"}', True),
    (b'{"model" : "groq/llama", "note": "caf\\u00e9"}', True),  # an escape that spells no letter
    (b'{"model":"groq/llama","metadata":{"model":"groq/llama"}}', False),  # named twice: not known alone
    (b'{"mod\\u0065l":"groq/llama","metadata":{"model":"groq/llama"}}', False),  # spelt with an escape
    (b'{"messages":[]}', False),  # no model at all
    # a quote written as an escape: encoded again, ``"\u0022model"`` becomes ``"\"model"``, a "model" more
    (b'{"metadata":{"\\u0022model":"x"},"model":"groq/llama","max_tokens":9}', False),
    (b'{"metadata":{"\\u005c\\u0022model":"x"},"model":"groq/llama"}', False),
]


@pytest.mark.parametrize(("body", "sole"), SOLE_CASES)
def test_the_duplicate_check_tells_when_the_body_names_its_model_once(body: bytes, sole: bool) -> None:
    payload = orjson.loads(body)
    assert refuse_duplicate_members(body, payload) is sole
    if sole:  # what the rewrite then skips changes nothing of what it writes
        assert replace_model(body, payload, "llama", sole=True) == replace_model(body, payload, "llama")


def test_a_top_level_member_twice_is_refused() -> None:
    body = b'{"model":"a","messages":[],"model":"b"}'
    with pytest.raises(InvalidRequest) as refused:
        refuse_duplicate_members(body, orjson.loads(body))
    assert refused.value.code == "duplicate_member" and refused.value.param == "model"


# A small body is searched once a member; a large one (an agent's) by one expression over it all.
PADDINGS = [0, ONE_PASS_BODY]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("member", sorted(GUARDED_MEMBERS))
def test_every_guarded_member_given_twice_at_the_top_level_is_refused(member: str, padding: int) -> None:
    name = member.encode()
    body = b'{"%s": 1, "pad": "%s", "metadata": {"%s": 2}, "%s": 3}' % (name, b"x" * padding, name, name)
    with pytest.raises(InvalidRequest) as refused:
        refuse_duplicate_members(body, orjson.loads(body))
    assert refused.value.param == member


@pytest.mark.parametrize("padding", PADDINGS)
def test_a_guarded_name_repeated_only_inside_is_not_a_duplicate(padding: int) -> None:
    body = b'{"model":"a","tools":[{"model":"x"},{"model":"y"}],"messages":[{"role":"user","content":"%s"}]}' % (
        b"n" * max(1, padding)
    )
    assert refuse_duplicate_members(body, orjson.loads(body)) is False  # allowed, but not known alone


@pytest.mark.parametrize("padding", PADDINGS)
def test_a_body_naming_its_model_once_is_known_to_whatever_its_size(padding: int) -> None:
    body = b'{"messages":[{"role":"user","content":"%s"}],"n":1,"model":"groq/llama"}' % (b"y" * padding)
    payload = orjson.loads(body)
    assert refuse_duplicate_members(body, payload) is True
    assert orjson.loads(replace_model(body, payload, "llama", sole=True)) == {**payload, "model": "llama"}


@pytest.mark.parametrize(("body", "sole"), SOLE_CASES)
def test_the_top_level_model_is_rewritten_in_a_body_encoded_again_with_a_member_replaced(
    body: bytes, sole: bool
) -> None:
    # A clamp of max_tokens replaces a member the client sent: the whole payload is encoded again, and what
    # the duplicate check said of the client's body must still hold of this one.
    payload = orjson.loads(body)
    told = refuse_duplicate_members(body, payload)
    changed = {**payload, "max_tokens": 5}
    sent = add_members(body, payload, {"max_tokens": 5})
    assert orjson.loads(replace_model(sent, changed, "llama", sole=told)) == {**changed, "model": "llama"}


@pytest.mark.parametrize(
    "body",
    [
        # a tool's ``model`` parameter: named twice, but only the top-level member has a string value
        b'{"tools":[{"parameters":{"properties":{"model":{"type":"string"}}}}],"model":"groq/llama"}',
        # a key that ends in an escaped quote and "model", with another value
        b'{"metadata":{"\\"model":"other"},"model":"groq/llama"}',
        # the same, with the same value: two candidates, checked by parsing each
        b'{"metadata":{"\\"model":"groq/llama"},"model":"groq/llama"}',
        b'{"metadata":{"model":"groq/llama"},"model":"groq/llama","note":"caf\\u00e9"}',
    ],
)
def test_a_body_naming_model_inside_too_has_only_its_top_level_member_rewritten(body: bytes) -> None:
    payload = orjson.loads(body)
    assert refuse_duplicate_members(body, payload) is False
    rewritten = replace_model(body, payload, "llama")
    assert orjson.loads(rewritten) == {**payload, "model": "llama"}
    assert len(rewritten) == len(body) - len(b"groq/")  # every other byte as the client sent it


def test_a_body_nested_deeper_than_the_standard_library_reads_is_a_400_not_a_crash() -> None:
    # orjson reads it; an escaped letter sends it to the slower check, which parses it again.
    body = b'{"model":"m","note":"\\u0061","deep":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(InvalidRequest) as refused:
        refuse_duplicate_members(body, orjson.loads(body))
    assert refused.value.code == "invalid_json"
