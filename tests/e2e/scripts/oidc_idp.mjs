// A real OpenID provider for Patchbay's e2e tests: `oidc-provider` (certified OpenID Connect implementation),
// on loopback, in the configuration Patchbay meets in the field.
//
//   node oidc_idp.mjs PORT PATCHBAY_CALLBACK_URI
//
// Secrets come from the environment: IDP_PATCHBAY_SECRET (client "patchbay": federated sign-in, redirect URI =
// Patchbay's /authorize/callback), IDP_AGENT_SECRET (clients "agent", "agent-short", "agent-opaque": the
// client_credentials grant with a resource indicator, for `external` mode), IDP_RS_SECRET (client "patchbay-rs":
// RFC 7662 introspection). Any login/password signs in at the built-in development pages (devInteractions);
// the account's claims come from findAccount below. Access tokens for a resource (RFC 8707) are JWTs whose
// audience is that resource (RFC 9068), living 300 s ("agent-short": 3 s); "agent-opaque" gets opaque ones,
// which only introspection can check. Prints `READY <issuer>` on stdout once listening.
import { generateKeyPairSync } from "node:crypto";

const [port, callback] = process.argv.slice(2);
if (!port || !callback) throw new Error("usage: oidc_idp.mjs PORT PATCHBAY_CALLBACK_URI");

// oidc-provider lives in tests/e2e/node/node_modules (installed by `make node`), not next to this script.
const { default: Provider, errors } = await import(
  new URL("../node/node_modules/oidc-provider/lib/index.js", import.meta.url).href
);

const issuer = `http://127.0.0.1:${port}`;
const secret = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

// Groups map to Patchbay roles through [auth.upstream] role_map; "unmapped" must be ignored. An account whose id
// starts with "plain" is only in "sales": someone without the administrators' group.
const groupsOf = (id) => (id.startsWith("plain") ? ["sales"] : ["mcp-admins", "sales", "unmapped"]);

function account(id) {
  return {
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.com`,
      email_verified: true,
      name: `${id[0].toUpperCase()}${id.slice(1)} Example`,
      preferred_username: id,
      groups: groupsOf(id),
    }),
  };
}

const agent = (clientId) => ({
  client_id: clientId,
  client_secret: secret("IDP_AGENT_SECRET"),
  grant_types: ["client_credentials"],
  redirect_uris: [],
  response_types: [],
  scope: "mcp",
});

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "e2e-rs256", use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "patchbay",
      client_secret: secret("IDP_PATCHBAY_SECRET"),
      redirect_uris: [callback],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    agent("agent"),
    agent("agent-short"),
    agent("agent-opaque"),
    {
      client_id: "patchbay-rs",
      client_secret: secret("IDP_RS_SECRET"),
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [secret("IDP_PATCHBAY_SECRET")] },
  findAccount: async (_ctx, id) => account(id),
  scopes: ["openid", "email", "profile", "groups", "mcp"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  // Access tokens carry the caller's roles (Patchbay's external mode reads `roles`).
  extraTokenClaims: async () => ({ roles: ["idp-operator"] }),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: async (_ctx, resource, client) => {
        if (!resource.startsWith("http://127.0.0.1:")) throw new errors.InvalidTarget();
        return {
          scope: "mcp",
          audience: resource,
          accessTokenTTL: client.clientId === "agent-short" ? 3 : 300,
          accessTokenFormat: client.clientId === "agent-opaque" ? "opaque" : "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
});

const server = provider.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`READY ${issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
