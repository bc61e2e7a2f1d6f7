"""Model resolution (CONTRACTS.md "Model names"): pure functions over a ModelIndex, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anygate.errors import ModelNotFound
from anygate.models import ModelIndex, Target, resolve_model, split_provider_prefix


def index(
    models: dict[str, list[str] | None],
    *,
    aliases: dict[str, str] | None = None,
    provider_aliases: dict[str, str] | None = None,
    default: str | None = None,
) -> ModelIndex:
    return ModelIndex.build(
        list(models), models, aliases=aliases, provider_aliases=provider_aliases, default_provider=default
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openrouter/anthropic/claude-3.5-sonnet", ("openrouter", "anthropic/claude-3.5-sonnet")),
        ("ollama:llama3:8b", ("ollama", "llama3:8b")),
        ("groq/llama-3.1-8b-instant", ("groq", "llama-3.1-8b-instant")),
        ("a:b/c", ("a", "b/c")),
        ("a/b:c", ("a", "b:c")),
        ("llama2:latest", ("llama2", "latest")),
        ("gpt-4o", None),
        ("/leading-slash", None),
        (":leading-colon", None),
        ("trailing/", None),
        ("trailing:", None),
        ("", None),
    ],
)
def test_split_provider_prefix_cuts_at_the_first_separator(name: str, expected: tuple[str, str] | None) -> None:
    assert split_provider_prefix(name) == expected


PROVIDER = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
REST = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1, max_size=40)


@given(provider=PROVIDER, separator=st.sampled_from("/:"), rest=REST)
def test_split_provider_prefix_keeps_the_rest_whole(provider: str, separator: str, rest: str) -> None:
    assert split_provider_prefix(f"{provider}{separator}{rest}") == (provider, rest)


CATALOG = index(
    {
        "openrouter": ["anthropic/claude-3.5-sonnet", "openai/gpt-4o", "shared-model"],
        "ollama": ["llama2:latest", "llama3:8b", "shared-model"],
        "groq": ["llama-3.1-8b-instant", "shared-model"],
    },
    aliases={"fast": "groq/llama-3.1-8b-instant", "claude": "anthropic/claude-3.5-sonnet"},
    provider_aliases={"openai_compatible": "openrouter"},
)


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("fast", [Target("groq", "llama-3.1-8b-instant")]),
        ("claude", [Target("openrouter", "anthropic/claude-3.5-sonnet")]),
        ("openrouter/anthropic/claude-3.5-sonnet", [Target("openrouter", "anthropic/claude-3.5-sonnet")]),
        ("openrouter:openai/gpt-4o", [Target("openrouter", "openai/gpt-4o")]),
        ("openai_compatible:openai/gpt-4o", [Target("openrouter", "openai/gpt-4o")]),
        ("openai_compatible/openai/gpt-4o", [Target("openrouter", "openai/gpt-4o")]),
        ("ollama:llama3:8b", [Target("ollama", "llama3:8b")]),
        ("ollama/llama3:8b", [Target("ollama", "llama3:8b")]),
        # A bare name with a colon is a model some provider lists, not provider "llama2" (a bug once).
        ("llama2:latest", [Target("ollama", "llama2:latest")]),
        # A bare name with a slash that is not a provider prefix is looked up whole.
        ("anthropic/claude-3.5-sonnet", [Target("openrouter", "anthropic/claude-3.5-sonnet")]),
        # Served by several providers: all of them, in the configured order.
        (
            "shared-model",
            [Target("openrouter", "shared-model"), Target("ollama", "shared-model"), Target("groq", "shared-model")],
        ),
    ],
)
def test_resolution_order(name: str, targets: list[Target]) -> None:
    assert resolve_model(name, CATALOG) == targets


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o-typo",  # listed by nobody, and no preferred provider with an unknown list
        "groq/llama-3.1-8b-instantt",  # a typo under a provider that lists its models
        "ollama:llama9",
        "llama2",  # only "llama2:latest" is listed
        "nope/model",  # not a provider, not a listed model
    ],
)
def test_unknown_models_are_404_naming_the_model(name: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve_model(name, CATALOG)
    error = caught.value
    assert (error.status, error.type, error.code, error.param) == (404, "not_found_error", "model_not_found", "model")
    assert f"'{name}'" in error.message


def test_preferred_provider_comes_first_among_several() -> None:
    both = index({"a": ["m"], "b": ["m"], "c": ["m"]}, default="b")
    assert resolve_model("m", both) == [Target("b", "m", preferred=True), Target("a", "m"), Target("c", "m")]


def test_preferred_provider_gets_unlisted_names_only_while_its_list_is_unknown() -> None:
    unknown = index({"openrouter": None, "groq": ["llama"]}, default="openrouter")
    assert resolve_model("anything/at-all", unknown) == [Target("openrouter", "anything/at-all")]
    assert resolve_model("llama", unknown) == [Target("groq", "llama")]
    known = index({"openrouter": ["gpt"], "groq": ["llama"]}, default="openrouter")
    with pytest.raises(ModelNotFound):
        resolve_model("anything/at-all", known)


def test_no_preferred_provider_means_no_guessing_even_with_unknown_lists() -> None:
    with pytest.raises(ModelNotFound):
        resolve_model("some-model", index({"openrouter": None}))


def test_preferred_provider_may_be_named_by_its_alias() -> None:
    # PREFERRED_PROVIDER=openrouter names the env provider whose id is openai_compatible (a bug once).
    idx = index({"openai_compatible": None}, provider_aliases={"openrouter": "openai_compatible"}, default="openrouter")
    assert idx.default_provider == "openai_compatible"
    assert resolve_model("anthropic/claude", idx) == [Target("openai_compatible", "anthropic/claude")]
    assert resolve_model("openrouter:anthropic/claude", idx) == [Target("openai_compatible", "anthropic/claude")]


def test_prefix_of_a_provider_with_an_unknown_list_is_forwarded() -> None:
    idx = index({"ollama": None})
    assert resolve_model("ollama:llama3:8b", idx) == [Target("ollama", "llama3:8b")]


def test_alias_that_names_a_listed_model_directly() -> None:
    idx = index({"a": ["real-model"]}, aliases={"nick": "real-model"})
    assert resolve_model("nick", idx) == [Target("a", "real-model")]


def test_alias_to_nothing_is_404_naming_what_the_client_asked_for() -> None:
    idx = index({"a": ["real-model"]}, aliases={"nick": "a/gone"})
    with pytest.raises(ModelNotFound, match="'nick'"):
        resolve_model("nick", idx)


def test_a_prefix_whose_provider_lacks_the_model_falls_back_to_the_whole_name() -> None:
    # "openai/gpt-4o" is OpenRouter's id, while an "openai" provider that lists its models is configured too.
    idx = index({"openai": ["gpt-4o-mini"], "openrouter": ["openai/gpt-4o"]})
    assert resolve_model("openai/gpt-4o", idx) == [Target("openrouter", "openai/gpt-4o")]
    assert resolve_model("openai/gpt-4o-mini", idx) == [Target("openai", "gpt-4o-mini")]
    with pytest.raises(ModelNotFound):
        resolve_model("openai/gpt-5-typo", idx)


def test_a_prefixed_name_its_provider_lacks_is_not_sent_to_the_preferred_provider() -> None:
    idx = index({"openai": ["gpt-4o-mini"], "vllm": None}, default="vllm")
    with pytest.raises(ModelNotFound):
        resolve_model("openai/gpt-4o", idx)


def test_an_alias_whose_target_is_gone_is_not_guessed_onto_the_preferred_provider() -> None:
    idx = index({"openai": ["gpt-4o-mini"], "vllm": None}, aliases={"gpt-4o": "openai/gpt-4o"}, default="vllm")
    with pytest.raises(ModelNotFound, match="'gpt-4o'"):
        resolve_model("gpt-4o", idx)
    listed = index({"openai": ["gpt-4o-mini"], "groq": ["gpt-4o"]}, aliases={"gpt-4o": "openai/gpt-4o"})
    assert resolve_model("gpt-4o", listed) == [Target("groq", "gpt-4o")]


MODEL = st.from_regex(r"[A-Za-z0-9._:/-]{1,30}", fullmatch=True)


@given(
    lists=st.dictionaries(PROVIDER, st.one_of(st.none(), st.lists(MODEL, max_size=5)), min_size=1, max_size=4),
    name=MODEL,
    default_index=st.integers(min_value=-1, max_value=3),
)
def test_never_routes_to_a_provider_that_lists_its_models_but_not_this_one(
    lists: dict[str, list[str] | None], name: str, default_index: int
) -> None:
    providers = list(lists)
    default = providers[default_index] if 0 <= default_index < len(providers) else None
    idx = index(lists, default=default)
    try:
        targets = resolve_model(name, idx)
    except ModelNotFound:
        return
    assert targets
    for target in targets:
        listed = lists[target.provider_id]
        assert listed is None or target.model in listed
        assert name == target.model or name.endswith(target.model)


@given(provider=PROVIDER, separator=st.sampled_from("/:"), model=MODEL)
def test_prefixed_name_reaches_a_provider_whose_list_is_unknown(provider: str, separator: str, model: str) -> None:
    idx = index({provider: None})
    assert resolve_model(f"{provider}{separator}{model}", idx) == [Target(provider, model)]
