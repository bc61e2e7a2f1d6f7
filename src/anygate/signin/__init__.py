"""Console sign-in with an OpenID Connect issuer: the authorization code flow with PKCE, a state used once
and a nonce, the ID token checked against the issuer's published keys, and a sealed session cookie.

    rules.py      who may sign in, and as what (admin, a team's user record, their own), from the claims
    sealing.py    small payloads sealed for cookies (AES-GCM under a key derived from the store's key)
    issuer.py     discovery, the signing keys and the token endpoint, through the SSRF-guarded transport
    id_tokens.py  the ID token's checks: signature, iss, aud (and azp), exp, iat, nonce
    service.py    begin (the redirect to the issuer) and finish (the callback), and reading a session
"""
