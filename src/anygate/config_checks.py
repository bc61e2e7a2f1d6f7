"""Configuration mistakes that do not stop the gateway but break requests later, found at start so that the
operator reads about each once, in plain words:

- a ``${VAR}`` in the config file whose variable is unset or empty (it was read as ``""``);
- a provider that needs a key and has none (its requests fail until one is given, or a caller brings one);
- an alias, a fallback, or a model with fallbacks, naming a model no provider lists (after discovery, or
  from the configured lists when discovery failed); a provider whose list is unknown is not judged.

The first two need only the settings (``static_warnings``, printed by ``anygate serve`` before it starts);
the last needs the model lists (``routing_warnings``, logged once by each process after its first
discovery).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from anygate.catalog import key_env_name
from anygate.errors import ModelNotFound
from anygate.models import ModelIndex, resolve_model, split_provider_prefix
from anygate.settings import Settings


def static_warnings(settings: Settings) -> list[str]:
    """What is wrong in the settings alone: empty ``${VAR}`` references, providers without a needed key."""
    return [*empty_variable_warnings(settings), *missing_key_warnings(settings)]


def empty_variable_warnings(settings: Settings) -> Iterator[str]:
    for where, name in settings.empty_variables:
        yield f"{settings.config_file}: {where} uses ${{{name}}}, which is not set (it was read as empty)"


def missing_key_warnings(settings: Settings) -> Iterator[str]:
    for provider in settings.providers:
        if not provider.enabled or provider.auth == "none" or provider.api_keys or settings.provider_key(provider):
            continue
        yield (
            f"provider '{provider.id}' has no API key: set {key_env_name(provider.id)} (or api_key in the config "
            "file); until then only callers who bring their own key for it (PUT /auth/creds) can use it"
        )


def routing_warnings(
    index: ModelIndex, aliases: Mapping[str, str], fallbacks: Mapping[str, Sequence[str]]
) -> list[str]:
    """Aliases and fallbacks that name a model no provider lists, as a request for them would find."""
    found: list[str] = []
    for alias, target in aliases.items():
        if not resolves(alias, index):
            found.append(f"alias '{alias}' points at '{target}', but {unresolved_reason(target, index)}")
    for model, chain in fallbacks.items():
        if not resolves(model, index):
            reason = unresolved_reason(model, index)
            found.append(f"fallbacks for '{model}' are never tried: {reason}, so requests for it are refused first")
        for target in chain:
            if not resolves(target, index):
                found.append(f"fallback '{target}' of '{model}' is skipped: {unresolved_reason(target, index)}")
    return found


def resolves(name: str, index: ModelIndex) -> bool:
    try:
        resolve_model(name, index)
    except ModelNotFound:
        return False
    return True


def unresolved_reason(name: str, index: ModelIndex) -> str:
    """``provider 'groq' does not list 'llama-x' (it lists 12 models)`` or ``no provider lists 'llama-x'``."""
    prefixed = split_provider_prefix(name)
    provider_id = index.canonical_provider(prefixed[0]) if prefixed is not None else None
    if prefixed is None or provider_id is None:
        return f"no provider lists '{name}'"
    count = len(index.models_by_provider.get(provider_id) or ())
    return f"provider '{provider_id}' does not list '{prefixed[1]}' (it lists {count} model{'' if count == 1 else 's'})"
