"""Headers that choose which account the operator's provider key bills (OpenAI's organization and project,
Google's billing project) are the provider's to set, in its ``headers``: a client's are never sent upstream,
or a key holder could move its spend to another organization or project of the operator's."""

from __future__ import annotations

import pytest

from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import inprocess_gateway

BILLING = {"openai-organization": "org_other", "openai-project": "proj_other", "x-goog-user-project": "other"}
CHAT = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/proxy/fake/v1/chat/completions", {**CHAT, "model": "fake-model"}),
        ("/v1/responses", {"model": "fake/fake-model", "input": "hi"}),
    ],
)
def test_a_clients_billing_headers_never_reach_the_upstream(path: str, body: dict[str, object]) -> None:
    up = FakeUpstream(usage=Usage(11, 7)).in_memory()
    provider = fake_provider(up, headers={"OpenAI-Project": "proj_course"})
    with inprocess_gateway(gateway_settings(provider), up) as gw, gw.client() as http:
        assert http.post(path, json=body, headers={**BILLING, "x-title": "my app"}).status_code == 200
    sent = {name.lower(): value for name, value in up.requests[-1].headers.items()}
    assert not {"openai-organization", "x-goog-user-project"} & set(sent)
    assert sent["openai-project"] == "proj_course"  # the provider's own, as configured
    assert sent["x-title"] == "my app"  # what does not choose an account still passes
