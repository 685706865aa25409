"""Verifies an access token of the identity service the way a Python
service would: PyJWT's PyJWKClient against the HTTP JWKS, with issuer,
audience and typ checked. Used by tests/e2e/well_known/other_libraries.rs.

    python verify_jwks.py JWKS_URL ISSUER AUDIENCE TOKEN

Exit 0 and the claims as JSON on stdout when the token verifies; exit 1 and
the refusal on stdout when it is refused.
"""

import json
import sys

import jwt


def main() -> int:
    jwks_url, issuer, audience, token = sys.argv[1:5]
    try:
        # PyJWT does not check `typ`: an ID token or a refresh JWT of the
        # same issuer must not pass as an access token (RFC 9068 §4).
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt":
            raise jwt.InvalidTokenError(f"typ {header.get('typ')!r}")
        key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as error:
        print(json.dumps({"refused": type(error).__name__}))
        return 1
    print(json.dumps({"header": header, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
