// A real Better-Auth server for the identity end-to-end tests
// (tests/e2e/exchange/): email + password sign-in, the jwt plugin
// (GET /api/auth/token, GET /api/auth/jwks) and the bearer plugin, on an
// ephemeral 127.0.0.1 port. Prints one JSON line {"port": N} once it listens.
//
// Settings (environment):
//   BA_SECRET            BETTER_AUTH_SECRET; it encrypts the stored JWKS keys
//   BA_DATABASE          SQLite file (":memory:" when unset); two servers on
//                        one file with one secret share their signing keys
//   BA_ISSUER            jwt.issuer   (default: the base URL)
//   BA_AUDIENCE          jwt.audience (default: the base URL)
//   BA_ALG               jwks.keyPairConfig.alg: EdDSA (default), ES256, RS256, PS256
//   BA_EXPIRATION        jwt.expirationTime (default 15m)
//   BA_IDENTITY_URL      identity's gRPC address (http://host:port) and
//   BA_IDENTITY_CLIENT_ID, BA_IDENTITY_CLIENT_SECRET
//                        a provisioner service client (signs in with
//                        AuthService.ServiceLogin), or
//   BA_IDENTITY_TOKEN    a provisioner token (issue-service-token): when the
//                        URL and either are set, the
//                        databaseHooks.user.create.after hook creates the
//                        profile with ProfileService.CreateProfile, and the
//                        user.delete.after and user.update.after (ban, with
//                        the admin plugin) hooks end the user's sessions
//                        with AuthService.RevokeAllSessions (see README.md);
//                        POST /api/auth/delete-user is enabled
//
// Test-only routes (never part of a real deployment):
//   GET  /test/stats     {"jwks": <GET /api/auth/jwks served so far>}
//   POST /test/rotate    mints a new signing key; later tokens use it
//   POST /test/sign      signs the JSON body's "payload" with the current key
//   POST /test/ban       {"userId"}: bans the user as the admin plugin's
//                        ban-user does (hooks mode only)
import http from "node:http";
import { betterAuth } from "better-auth";
import { admin, bearer, jwt } from "better-auth/plugins";
import { createJwk } from "better-auth/plugins/jwt";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import Database from "better-sqlite3";
import { createProfileHook, identityClient, revokeSessionsHook } from "./provision.mjs";

const env = process.env;
const secret = env.BA_SECRET ?? "test-secret-test-secret-test-secret-0123456789";
const alg = env.BA_ALG ?? "EdDSA";
const keyPairConfig =
  alg === "EdDSA"
    ? { alg, crv: "Ed25519" }
    : alg.startsWith("ES")
      ? { alg }
      : { alg, modulusLength: 2048 };

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const jwtOptions = {
  jwks: { keyPairConfig },
  jwt: {
    ...(env.BA_ISSUER ? { issuer: env.BA_ISSUER } : {}),
    ...(env.BA_AUDIENCE ? { audience: env.BA_AUDIENCE } : {}),
    expirationTime: env.BA_EXPIRATION ?? "15m",
  },
};

const options = {
  baseURL,
  secret,
  database: new Database(env.BA_DATABASE ?? ":memory:"),
  emailAndPassword: { enabled: true },
  plugins: [jwt(jwtOptions), bearer()],
  logger: { level: "error" },
  telemetry: { enabled: false },
  rateLimit: { enabled: false },
};
const hooks = Boolean(
  env.BA_IDENTITY_URL && (env.BA_IDENTITY_TOKEN || env.BA_IDENTITY_CLIENT_ID),
);
if (hooks) {
  const identity = identityClient({
    url: env.BA_IDENTITY_URL,
    token: env.BA_IDENTITY_TOKEN,
    clientId: env.BA_IDENTITY_CLIENT_ID,
    clientSecret: env.BA_IDENTITY_CLIENT_SECRET,
  });
  const revokeSessions = revokeSessionsHook(identity);
  options.plugins.push(admin());
  options.user = { deleteUser: { enabled: true } };
  options.databaseHooks = {
    user: {
      create: { after: createProfileHook(identity) },
      update: {
        after: async (user) => {
          if (user.banned) await revokeSessions(user);
        },
      },
      delete: { after: revokeSessions },
    },
  };
}

const { runMigrations } = await getMigrations(options);
await runMigrations();
const auth = betterAuth(options);
const handle = toNodeHandler(auth);

const stats = { jwks: 0 };

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      try {
        resolve(body ? JSON.parse(body) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

function json(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

server.on("request", async (req, res) => {
  try {
    const path = new URL(req.url, baseURL).pathname;
    if (path === "/test/stats" && req.method === "GET") {
      return json(res, 200, stats);
    }
    if (path === "/test/rotate" && req.method === "POST") {
      const key = await createJwk({ context: await auth.$context }, jwtOptions);
      return json(res, 200, { kid: key.id });
    }
    if (path === "/test/sign" && req.method === "POST") {
      const { payload } = await readJson(req);
      const { token } = await auth.api.signJWT({ body: { payload } });
      return json(res, 200, { token });
    }
    if (path === "/test/ban" && req.method === "POST" && hooks) {
      const { userId } = await readJson(req);
      const ctx = await auth.$context;
      await ctx.internalAdapter.updateUser(userId, {
        banned: true,
        banReason: "test",
        updatedAt: new Date(),
      });
      await ctx.internalAdapter.deleteUserSessions(userId);
      return json(res, 200, {});
    }
    if (path === "/api/auth/jwks") {
      stats.jwks += 1;
    }
    return handle(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) json(res, 500, { error: String(e?.message ?? e) });
  }
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
console.log(JSON.stringify({ port: server.address().port, baseURL }));
