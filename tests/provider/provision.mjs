// Better-Auth's databaseHooks.user.create.after, creating the identity
// profile of each new user with ProfileService.CreateProfile (auth_provider
// "better-auth", auth_id = the Better-Auth user id). The token is a
// provisioner service token: `identity admin issue-service-token --role
// provisioner --ttl 30days`. README.md ("External provider") shows the same hook.
//
// The hook never fails the sign-up: if identity is unreachable the profile
// is created anyway by the user's first ExchangeToken.
//
// revokeSessionsHook is the user-delete and ban hook: it ends every session
// of the user at identity with AuthService.RevokeAllSessions, naming the
// profile by (auth_provider, auth_id) (same provisioner token). README.md
// shows the same hooks.
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = process.env.BA_PROTO_ROOT ?? path.join(here, "../../proto");

export function createProfileHook({ url, token, provider = "better-auth" }) {
  const definition = protoLoader.loadSync("identity/v1/profile.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    defaults: true,
  });
  const { ProfileService } = grpc.loadPackageDefinition(definition).identity.v1;
  const target = new URL(url);
  const client = new ProfileService(
    target.host,
    target.protocol === "https:"
      ? grpc.credentials.createSsl()
      : grpc.credentials.createInsecure(),
  );

  return async (user) => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const request = {
      profile: {
        auth_provider: provider,
        auth_id: user.id,
        email: user.email ?? "",
        display_name: (user.name ?? "").slice(0, 100),
      },
    };
    await new Promise((resolve) => {
      client.CreateProfile(
        request,
        metadata,
        { deadline: Date.now() + 5000 },
        (error) => {
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

export function revokeSessionsHook({ url, token, provider = "better-auth" }) {
  const definition = protoLoader.loadSync("identity/v1/auth.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    defaults: true,
  });
  const { AuthService } = grpc.loadPackageDefinition(definition).identity.v1;
  const target = new URL(url);
  const client = new AuthService(
    target.host,
    target.protocol === "https:"
      ? grpc.credentials.createSsl()
      : grpc.credentials.createInsecure(),
  );

  return async (user) => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    await new Promise((resolve) => {
      client.RevokeAllSessions(
        { auth_provider: provider, auth_id: user.id },
        metadata,
        { deadline: Date.now() + 5000 },
        (error) => {
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
