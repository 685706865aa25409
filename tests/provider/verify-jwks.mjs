// Verifies an access token of the identity service the way a Node service
// would: jose's createRemoteJWKSet against the HTTP JWKS, with issuer,
// audience and typ checked. Used by tests/e2e/well_known/other_libraries.rs.
//
//   node verify-jwks.mjs JWKS_URL ISSUER AUDIENCE TOKEN
//
// Exit 0 and the claims as JSON on stdout when the token verifies; exit 1
// and jose's error code on stdout when it is refused.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer, audience, token] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer,
    audience,
    typ: "at+jwt",
    algorithms: ["EdDSA"],
  });
  console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
} catch (error) {
  console.log(JSON.stringify({ refused: error.code ?? String(error) }));
  process.exit(1);
}
