"""A request's plan: the deployment groups to try, and the key each attempt sends.

``Planner.plan(model, principal, needs)`` resolves the model and each of its fallbacks (``fallbacks:``) to
the deployments this caller may use: one group per name, in order. A deployment whose provider has no key
(and for which the caller brought none) is left out; when that leaves nothing at all, the answer is
401 ``No API key configured for <provider>``. A model the caller may not use is 403. A deployment whose
provider's live probe found it without what the request ``needs`` (``streaming``, ``embeddings``:
``needs_of``) is left out too; when that leaves nothing, the answer is 400 naming the capability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from anygate.auth import Principal
from anygate.caller_keys import CallerKeys
from anygate.errors import InvalidRequest, MissingProviderKey, ModelNotFound, PermissionDenied
from anygate.models import Target
from anygate.registry import ProviderRegistry, ProviderRuntime
from anygate.routing import Deployment

NOTHING: frozenset[str] = frozenset()
STREAMING = frozenset({"streaming"})
EMBEDDINGS = frozenset({"embeddings"})


def needs_of(route: str, stream: bool) -> frozenset[str]:
    """What a request needs of its provider beyond a chat: ``embeddings`` for the embeddings route,
    ``streaming`` for a stream."""
    if route == "embeddings":
        return EMBEDDINGS
    return STREAMING if stream else NOTHING


def unsupported(model: str, lacking: frozenset[str]) -> InvalidRequest:
    capability = sorted(lacking)[0]
    return InvalidRequest(
        f"No provider of model '{model}' supports {capability}: its live test (POST /v1/providers/{{id}}/test) "
        f"found none",
        param="stream" if capability == "streaming" else "model",
        code="capability_unsupported",
    )


class Planner:
    def __init__(
        self, registry: ProviderRegistry, fallbacks: Mapping[str, Sequence[str]], caller_keys: CallerKeys
    ) -> None:
        self.registry = registry
        self.fallbacks = fallbacks
        self.caller_keys = caller_keys

    def plan(self, model: str, principal: Principal, needs: frozenset[str] = NOTHING) -> list[list[Deployment]]:
        """The model's own deployments, then each fallback's, that this caller may use, that have a key and
        whose providers were not found without what the request ``needs``."""
        groups: list[list[Deployment]] = []
        keyless: str | None = None
        lacking: frozenset[str] = NOTHING
        for name in (model, *self.fallbacks.get(model, ())):
            try:
                targets = self.registry.resolve(name)
            except ModelNotFound:
                if name == model:
                    raise
                continue
            allowed = [t for t in targets if principal.may_use(t.provider_id, t.model)]
            if needs and allowed:
                capable = [t for t in allowed if not needs & self.registry.get(t.provider_id).lacks]
                if not capable:
                    lacking = lacking or needs & self.registry.get(allowed[0].provider_id).lacks
                    continue
                allowed = capable
            group = [d for t in allowed for d in self.keyed_deployments(self.registry.get(t.provider_id), t, principal)]
            if group:
                groups.append(group)
            elif allowed:
                keyless = keyless or allowed[0].provider_id
            elif name == model and targets:
                raise PermissionDenied(f"This key may not use model '{model}'", param="model", code="model_not_allowed")
        if not groups and keyless is not None:
            raise MissingProviderKey(keyless)
        if not groups and lacking:
            raise unsupported(model, lacking)
        return groups

    def keyed_deployments(self, runtime: ProviderRuntime, target: Target, principal: Principal) -> list[Deployment]:
        """The deployments of ``runtime`` that have a key: the first uses the provider's own key (or the
        caller's), the others the provider's ``api_keys``."""
        deployments = runtime.deployments(target.model, target.preferred)
        if runtime.client.is_configured or self.caller_keys.has_key(principal, runtime.id):
            return deployments
        return deployments[1:]

    def key_for(
        self, principal: Principal, runtime: ProviderRuntime, deployment: Deployment
    ) -> tuple[str | None, bool]:
        """The key an attempt sends, and whether it is the caller's own: the caller's key for this provider,
        else the deployment's (``None``: the provider's own, already in its headers)."""
        own = self.caller_keys.key_for(principal, runtime.id)
        if own is not None:
            return own, True
        if deployment.key_index > 0:
            return runtime.config.api_keys[deployment.key_index - 1].get_secret_value(), False
        if not runtime.client.is_configured:
            raise MissingProviderKey(runtime.id)
        return None, False
