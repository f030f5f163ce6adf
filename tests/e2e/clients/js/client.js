// nmi end-to-end client: @azure/identity asks IMDS (169.254.169.254, no endpoint override) for a
// token and prints one JSON line with the decoded claims, never the token itself.
//
// usage: node client.js --credential managed|default [--client-id ID] --resource URL|SCOPE
// @azure/identity is resolved through NODE_PATH (tests/e2e/clients/build installs it with
// `npm ci` into a cache directory keyed by package-lock.json's hash).
"use strict";

function parseArgs(argv) {
  const args = { credential: "", clientId: "", resource: "" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--credential") args.credential = value();
    else if (a === "--client-id") args.clientId = value();
    else if (a === "--resource") args.resource = value();
    else throw new Error(`unknown argument ${a}`);
  }
  if (args.credential !== "managed" && args.credential !== "default")
    throw new Error("--credential must be managed or default");
  if (!args.resource) throw new Error("--resource is required");
  return args;
}

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

async function main() {
  const out = { sdk: "js" };
  const t0 = process.hrtime.bigint();
  let code = 1;
  try {
    const args = parseArgs(process.argv.slice(2));
    out.credential = args.credential;
    // Which credential of DefaultAzureCredential's chain produced the token: the chain's info
    // message "Result for <credential>: SUCCESS. Scopes: ..." is kept in memory, never printed.
    let chosen = null;
    const azlogger = require("@azure/logger");
    azlogger.AzureLogger.log = (...parts) => {
      const m = /Result for (\w+): SUCCESS/.exec(parts.join(" "));
      if (m) chosen = m[1];
    };
    azlogger.setLogLevel("info");
    const identity = require("@azure/identity");
    out.version = require("@azure/identity/package.json").version;
    const scope = args.resource.endsWith("/.default") ? args.resource : `${args.resource}/.default`;
    let cred;
    if (args.credential === "managed") {
      cred = args.clientId
        ? new identity.ManagedIdentityCredential({ clientId: args.clientId })
        : new identity.ManagedIdentityCredential();
    } else {
      cred = args.clientId
        ? new identity.DefaultAzureCredential({ managedIdentityClientId: args.clientId })
        : new identity.DefaultAzureCredential();
    }
    const tok = await cred.getToken(scope);
    if (!tok) throw new Error("getToken returned no token");
    out.ok = true;
    out.claims = claimsOf(tok.token);
    out.expires_on = Math.floor(tok.expiresOnTimestamp / 1000);
    if (args.credential === "default") out.chosen = chosen;
    code = 0;
  } catch (e) {
    out.ok = false;
    out.error = `${e && e.name ? e.name : "Error"}: ${e && e.message ? e.message : String(e)}`;
  }
  out.elapsed_ms = Number((process.hrtime.bigint() - t0) / 1000000n);
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exitCode = code;
}

main();
