// Drive Patchbay with the official TypeScript SDK client over Streamable HTTP.
//
//   node ts_client.mjs URL CALLS_JSON
//
// CALLS_JSON is an array of {"name": tool, "arguments": {...}}, run in order on one connection. An argument
// value {"$from": [i, "key", ...]} is replaced by that path inside the structuredContent of call i, so a test can
// create a record and read it back through the same client. Prints one JSON object on stdout:
// {"sessionId", "protocolVersion", "serverVersion", "tools", "results"}; exits 1 with a message on stderr.
import { createRequire } from "node:module";

// The SDK lives in tests/e2e/node/node_modules (installed by `make node`), not next to this script.
const require = createRequire(new URL("../node/package.json", import.meta.url));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

function resolveRefs(value, results) {
  if (Array.isArray(value)) return value.map((item) => resolveRefs(item, results));
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value.$from)) {
    const [index, ...path] = value.$from;
    return path.reduce((node, key) => node[key], results[index].structuredContent);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(v, results)]));
}

async function main() {
  const [url, callsJson = "[]"] = process.argv.slice(2);
  if (!url) throw new Error("usage: ts_client.mjs URL [CALLS_JSON]");
  const calls = JSON.parse(callsJson);
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const client = new Client({ name: "patchbay-e2e-ts", version: "0.0.0" });
  await client.connect(transport);
  try {
    const sessionId = transport.sessionId ?? null;
    const protocolVersion = transport.protocolVersion ?? null;
    const { tools } = await client.listTools();
    const results = [];
    for (const call of calls) {
      results.push(await client.callTool({ name: call.name, arguments: resolveRefs(call.arguments ?? {}, results) }));
    }
    const out = { sessionId, protocolVersion, serverVersion: client.getServerVersion() ?? null, tools, results };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close();
  }
}

main().catch((error) => {
  process.stderr.write(`ts_client failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
