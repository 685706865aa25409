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
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO_ROOT = process.env.BA_PROTO_ROOT ?? path.join(here, "../../proto");

export function createProfileHook({
  url,
  token,
  clientId,
  clientSecret,
  provider = "better-auth",
}) {
  const definition = protoLoader.loadSync(
    ["identity/v1/profile.proto", "identity/v1/auth.proto"],
    {
      includeDirs: [PROTO_ROOT],
      keepCase: true,
      defaults: true,
    },
  );
  const { ProfileService, AuthService } =
    grpc.loadPackageDefinition(definition).identity.v1;
  const target = new URL(url);
  const credentials =
    target.protocol === "https:"
      ? grpc.credentials.createSsl()
      : grpc.credentials.createInsecure();
  const client = new ProfileService(target.host, credentials);
  const auth = new AuthService(target.host, credentials);

  // The access token of the last ServiceLogin, until a minute before it
  // expires.
  let session = null;
  const accessToken = async () => {
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

  return async (user) => {
    let bearer;
    try {
      bearer = await accessToken();
    } catch (error) {
      console.error(`identity ServiceLogin failed: ${error.code} ${error.details}`);
      return;
    }
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${bearer}`);
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
          // UNAUTHENTICATED: the client was rotated or its session revoked;
          // sign in again next time.
          if (error && error.code === grpc.status.UNAUTHENTICATED) session = null;
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
