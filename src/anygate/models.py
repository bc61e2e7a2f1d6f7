"""Model naming and resolution: which provider(s) serve a request's ``model``, under which upstream id.

Pure functions over an immutable ``ModelIndex`` snapshot; the registry swaps the snapshot when a
provider's list changes.

Resolution order (CONTRACTS.md): an alias; ``provider/model`` or ``provider:model`` where the prefix up to
the first ``/`` or ``:`` is a provider id; the whole string as a model some provider lists; the preferred
provider while its own list is unknown; otherwise ``ModelNotFound``.

A prefix that names a provider whose (known) list lacks the rest is not the end: the whole string may still
be a model another provider lists (``openai/gpt-4o`` at OpenRouter while an ``openai`` provider is
configured too). Only a bare name the client sent reaches the preferred provider on trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from anygate.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Target:
    """One way to serve a request: a provider and the model id its upstream knows. ``preferred``: the
    preferred provider, for a bare name several providers serve (it is tried before the others, whatever
    the routing strategy; the others are its fallbacks)."""

    provider_id: str
    model: str
    preferred: bool = False

    def __repr__(self) -> str:
        return f"Target({self.provider_id}/{self.model}{' preferred' if self.preferred else ''})"


@dataclass(frozen=True)
class ModelIndex:
    """What every provider serves. ``None`` for a provider whose list is unknown (discovery failed)."""

    provider_order: tuple[str, ...] = ()
    models_by_provider: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    provider_aliases: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    default_provider: str | None = None
    providers_by_model: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        provider_order: Iterable[str],
        models_by_provider: Mapping[str, Iterable[str] | None],
        *,
        provider_aliases: Mapping[str, str] | None = None,
        aliases: Mapping[str, str] | None = None,
        default_provider: str | None = None,
    ) -> ModelIndex:
        order = tuple(provider_order)
        frozen = {p: (frozenset(m) if m is not None else None) for p, m in models_by_provider.items()}
        by_model: dict[str, list[str]] = {}
        for provider_id in order:
            for model in sorted(frozen.get(provider_id) or ()):
                by_model.setdefault(model, []).append(provider_id)
        canonical_default = (provider_aliases or {}).get(default_provider or "", default_provider)
        return cls(
            provider_order=order,
            models_by_provider=frozen,
            provider_aliases=dict(provider_aliases or {}),
            aliases=dict(aliases or {}),
            default_provider=canonical_default,
            providers_by_model={m: tuple(p) for m, p in by_model.items()},
        )

    def canonical_provider(self, name: str) -> str | None:
        """The provider id that ``name`` denotes (an id or a provider alias), or None."""
        name = self.provider_aliases.get(name, name)
        return name if name in self.models_by_provider else None

    def lists_model(self, provider_id: str, model: str) -> bool | None:
        """True/False when the provider's list is known, None when it is not."""
        models = self.models_by_provider.get(provider_id)
        return None if models is None else model in models


def split_provider_prefix(name: str) -> tuple[str, str] | None:
    """``openrouter/anthropic/claude`` → (``openrouter``, ``anthropic/claude``); the first ``/`` or ``:``."""
    cut = min((i for i in (name.find("/"), name.find(":")) if i > 0), default=-1)
    if cut < 0 or cut == len(name) - 1:
        return None
    return name[:cut], name[cut + 1 :]


def resolve_model(name: str, index: ModelIndex) -> list[Target]:
    """Every target that serves ``name``, preferred provider first. Raises ModelNotFound."""
    alias_target = index.aliases.get(name)
    if alias_target is None:
        targets = _resolve(name, index, trust_default=True)
    else:
        # An alias whose target is gone is not guessed onward: only a model listed under the alias's own
        # name can stand in for it.
        targets = _resolve(alias_target, index, trust_default=False) or _listed_targets(name, index)
    if not targets:
        raise ModelNotFound(name)
    return targets


def _resolve(name: str, index: ModelIndex, *, trust_default: bool) -> list[Target] | None:
    prefixed = split_provider_prefix(name)
    if prefixed is not None:
        provider_id = index.canonical_provider(prefixed[0])
        if provider_id is not None:
            targets = _prefixed_target(provider_id, prefixed[1], index)
            return targets or _listed_targets(name, index)
    listed = _listed_targets(name, index)
    if listed:
        return listed
    default = index.default_provider
    if trust_default and default is not None and index.models_by_provider.get(default, frozenset()) is None:
        return [Target(default, name)]
    return None


def _listed_targets(name: str, index: ModelIndex) -> list[Target] | None:
    listed = index.providers_by_model.get(name)
    if not listed:
        return None
    preferred = index.default_provider if len(listed) > 1 else None
    return [Target(p, name, p == preferred) for p in _preferred_first(listed, preferred)]


def _prefixed_target(provider_id: str, model: str, index: ModelIndex) -> list[Target] | None:
    # A provider that lists its models never receives a name it does not list (a typo is a 404).
    if index.lists_model(provider_id, model) is False:
        return None
    return [Target(provider_id, model)]


def _preferred_first(providers: tuple[str, ...], preferred: str | None) -> tuple[str, ...]:
    if preferred is None or preferred not in providers or providers[0] == preferred:
        return providers
    return (preferred, *(p for p in providers if p != preferred))
