"""The seam under the upstream client: send a request, read its response (``anygate.transport.base``)."""

from anygate.egress import Proxy
from anygate.transport.base import Headers, OutgoingRequest, Response, Timeouts, Transport

__all__ = ["Headers", "OutgoingRequest", "Proxy", "Response", "Timeouts", "Transport"]
