"""Quota: the shapes anygate serves and the client that reads them from other gateways."""
