// Better-Auth's databaseHooks.user.create.after, creating the identity
// profile of each new user with ProfileService.CreateProfile (auth_provider
// "better-auth", auth_id = the Better-Auth user id). The hook signs in as a
// provisioner service client (`identity admin create-service-client --role
// provisioner`) with AuthService.ServiceLogin, and logs in again shortly
// before the access token expires (there is no refresh token). A fixed
// `token` (`identity admin issue-service-token`, at most 24 h) is accepted
// for bootstrapping. README.md ("External provider") shows the same hook.
//
// The hook never fails the sign-up: if identity is unreachable the profile
// is created anyway by the user's first ExchangeToken.
//
// revokeSessionsHook is the user-delete and ban hook: it ends every session
// of the user at identity with AuthService.RevokeAllSessions, naming the
// profile by (auth_provider, auth_id), with the same provisioner
// credentials. README.md shows the same hooks.
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = process.env.BA_PROTO_ROOT ?? path.join(here, "../../proto");

function load() {
  const definition = protoLoader.loadSync(
    ["identity/v1/profile.proto", "identity/v1/auth.proto"],
    {
      includeDirs: [PROTO_ROOT],
      keepCase: true,
      defaults: true,
    },
  );
  return grpc.loadPackageDefinition(definition).identity.v1;
}

// The provisioner's connection and bearer token: the access token of the
// last ServiceLogin until a minute before it expires, or the fixed `token`.
// One per set of hooks, so both hooks share one sign-in.
export function identityClient({ url, token, clientId, clientSecret }) {
  const { ProfileService, AuthService } = load();
  const target = new URL(url);
  const credentials =
    target.protocol === "https:"
      ? grpc.credentials.createSsl()
      : grpc.credentials.createInsecure();
  const auth = new AuthService(target.host, credentials);
  let session = null;
  const bearer = async () => {
    if (!clientId) return token;
    if (session && Date.now() < session.renewAt) return session.token;
    const answer = await new Promise((resolve, reject) =>
      auth.ServiceLogin(
        { client_id: clientId, client_secret: clientSecret },
        { deadline: Date.now() + 5000 },
        (error, response) => (error ? reject(error) : resolve(response)),
      ),
    );
    const expires = Number(answer.access_token_expire_time.seconds) * 1000;
    session = { token: answer.access_token, renewAt: expires - 60_000 };
    return session.token;
  };
  const metadata = async () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await bearer()}`);
    return metadata;
  };
  return {
    auth,
    profiles: new ProfileService(target.host, credentials),
    metadata,
    // UNAUTHENTICATED: the client was rotated or its session revoked; sign
    // in again next time.
    failed(error) {
      if (error && error.code === grpc.status.UNAUTHENTICATED) session = null;
    },
  };
}

export function createProfileHook(identity, provider = "better-auth") {
  return async (user) => {
    let metadata;
    try {
      metadata = await identity.metadata();
    } catch (error) {
      console.error(`identity ServiceLogin failed: ${error.code} ${error.details}`);
      return;
    }
    const request = {
      profile: {
        auth_provider: provider,
        auth_id: user.id,
        email: user.email ?? "",
        display_name: (user.name ?? "").slice(0, 100),
      },
    };
    await new Promise((resolve) => {
      identity.profiles.CreateProfile(
        request,
        metadata,
        { deadline: Date.now() + 5000 },
        (error) => {
          identity.failed(error);
          // ALREADY_EXISTS: an ExchangeToken got there first. Fine.
          if (error && error.code !== grpc.status.ALREADY_EXISTS) {
            console.error(
              `identity CreateProfile for ${user.id} failed: ${error.code} ${error.details}`,
            );
          }
          resolve();
        },
      );
    });
  };
}

export function revokeSessionsHook(identity, provider = "better-auth") {
  return async (user) => {
    let metadata;
    try {
      metadata = await identity.metadata();
    } catch (error) {
      console.error(`identity ServiceLogin failed: ${error.code} ${error.details}`);
      return;
    }
    await new Promise((resolve) => {
      identity.auth.RevokeAllSessions(
        { auth_provider: provider, auth_id: user.id },
        metadata,
        { deadline: Date.now() + 5000 },
        (error) => {
          identity.failed(error);
          // NOT_FOUND: the user never reached identity. Fine. Anything else
          // must be seen: the user keeps access until IDENTITY_PROVIDER_SESSION_TTL.
          if (error && error.code !== grpc.status.NOT_FOUND) {
            console.error(
              `identity RevokeAllSessions for ${user.id} failed: ${error.code} ${error.details}`,
            );
          }
          resolve();
        },
      );
    });
  };
}
