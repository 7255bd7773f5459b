// Node client checks: openid-client (a certified OpenID Connect relying party) runs discovery,
// the code flow with PKCE, refresh, introspection, revocation and client_credentials with
// private_key_jwt against a real fhirgate; fhirclient's Node entry then makes FHIR calls with the
// token. The authorization code flow goes through the real login and consent pages in chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import * as oidc from "openid-client";
import { startServer } from "./lib/server.mjs";
import { launchBrowser } from "./lib/browser.mjs";

const require = createRequire(import.meta.url);
const smart = require("fhirclient"); // the Node entry (lib/entry/node.js)

const CLIENT_ID = "node-rp";
const REDIRECT = "http://localhost:3000/callback";

let server;
let browser;
let config; // openid-client Configuration
let tokenEndpoint;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  // An ES384 key pair; the public half is registered through the admin API.
  const kp = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"]);
  const jwk = { ...(await crypto.subtle.exportKey("jwk", kp.publicKey)), kid: "node-rp-1", alg: "ES384", use: "sig" };
  const reg = await fetch(`${server.admin}/admin/clients`, {
    method: "POST",
    headers: { Authorization: `Bearer ${server.adminToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      client_id: CLIENT_ID, client_name: "openid-client relying party",
      redirect_uris: [REDIRECT], token_endpoint_auth_method: "private_key_jwt",
      grant_types: ["authorization_code", "refresh_token", "client_credentials"],
      scope: "openid fhirUser profile launch/patient offline_access patient/*.rs system/*.rs",
      jwks: { keys: [jwk] },
    }),
  });
  assert.equal(reg.status, 201, await reg.text());

  // SMART Backend Services and fhirgate want the assertion's aud to be the token endpoint URL;
  // openid-client puts the issuer there unless told otherwise.
  const auth = oidc.PrivateKeyJwt({ key: kp.privateKey, kid: jwk.kid }, {
    [oidc.modifyAssertion]: (_header, payload) => { payload.aud = tokenEndpoint; },
  });
  config = await oidc.discovery(new URL(server.base), CLIENT_ID, { id_token_signed_response_alg: "RS256" }, auth,
    { execute: [oidc.allowInsecureRequests] });
  tokenEndpoint = config.serverMetadata().token_endpoint;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("discovery: the OpenID and SMART documents agree", async () => {
  const md = config.serverMetadata();
  assert.equal(md.issuer, server.base);
  assert.ok(md.code_challenge_methods_supported.includes("S256"));
  assert.ok(md.token_endpoint_auth_methods_supported.includes("private_key_jwt"));
  const sc = await (await fetch(`${server.fhirBase}/.well-known/smart-configuration`)).json();
  for (const k of ["token_endpoint", "authorization_endpoint", "introspection_endpoint", "revocation_endpoint"]) {
    assert.equal(sc[k], md[k], k);
  }
});

/** authorizeInBrowser opens the authorization URL, signs in, allows, and returns the callback URL. */
async function authorizeInBrowser(authURL, user) {
  const ctx = await browser.newContext();
  try {
    let callback;
    await ctx.route("http://localhost:3000/**", (route) => {
      callback = route.request().url();
      return route.fulfill({ status: 200, contentType: "text/plain", body: "done" });
    });
    const page = await ctx.newPage();
    await page.goto(authURL.href);
    await page.fill("input[name=username]", user);
    await page.fill("input[name=password]", server.password(user));
    await page.click("button[type=submit]");
    await page.click("button[name=decision][value=allow]");
    await page.waitForURL(/^http:\/\/localhost:3000\/callback/);
    return new URL(callback);
  } finally {
    await ctx.close();
  }
}

test("code flow with PKCE, refresh, introspection, revocation, and fhirclient with the token", async () => {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const authURL = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: "openid fhirUser launch/patient offline_access patient/Patient.rs patient/Observation.rs",
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256",
    state, nonce, aud: server.fhirBase,
  });
  const callback = await authorizeInBrowser(authURL, "alice");
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
  assert.equal(tokens.token_type.toLowerCase(), "bearer");
  assert.equal(tokens.patient, "example-alice");
  const idc = tokens.claims();
  assert.equal(idc.iss, server.base);
  assert.deepEqual([idc.aud].flat(), [CLIENT_ID]);
  assert.equal(idc.fhirUser, `${server.fhirBase}/Patient/example-alice`);
  assert.ok(tokens.refresh_token);

  // The wrong verifier is refused: PKCE is enforced (a fresh code, the same browser flow).
  {
    const v2 = oidc.randomPKCECodeVerifier();
    const s2 = oidc.randomState();
    const u2 = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT, scope: "openid launch/patient patient/Patient.rs",
      code_challenge: await oidc.calculatePKCECodeChallenge(v2), code_challenge_method: "S256", state: s2, aud: server.fhirBase,
    });
    const cb2 = await authorizeInBrowser(u2, "alice");
    await assert.rejects(oidc.authorizationCodeGrant(config, cb2, { pkceCodeVerifier: oidc.randomPKCECodeVerifier(), expectedState: s2 }),
      (e) => e.error === "invalid_grant");
  }

  // Introspection (authenticated with private_key_jwt).
  const info = await oidc.tokenIntrospection(config, tokens.access_token);
  assert.equal(info.active, true);
  assert.equal(info.client_id, CLIENT_ID);
  assert.equal(info.patient, "example-alice");

  // fhirclient (Node entry) inside a real HTTP handler, as a server-side app uses it.
  const fhir = await withFhirclient(tokens.access_token, "example-alice", async (client) => {
    const p = await client.patient.read();
    const obs = await client.request(`Observation?patient=example-alice&category=vital-signs&_count=5`);
    return { patient: p.id, observations: (obs.entry ?? []).length };
  });
  assert.deepEqual(fhir, { patient: "example-alice", observations: 5 });

  // Refresh: a new access token; the old refresh token is rotated out.
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, true);
  await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token), (e) => e.error === "invalid_grant");

  // That reuse revoked the family (RFC 9700 §4.14.2); a fresh grant shows plain revocation.
  assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, false);
  const s3 = oidc.randomState();
  const v3 = oidc.randomPKCECodeVerifier();
  const cb3 = await authorizeInBrowser(oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: "launch/patient offline_access patient/Patient.rs",
    code_challenge: await oidc.calculatePKCECodeChallenge(v3), code_challenge_method: "S256", state: s3, aud: server.fhirBase,
  }), "alice");
  const t3 = await oidc.authorizationCodeGrant(config, cb3, { pkceCodeVerifier: v3, expectedState: s3 });
  assert.equal((await oidc.tokenIntrospection(config, t3.access_token)).active, true);
  await oidc.tokenRevocation(config, t3.refresh_token, { token_type_hint: "refresh_token" });
  assert.equal((await oidc.tokenIntrospection(config, t3.access_token)).active, false, "revoking the refresh token revokes the grant");
  assert.equal((await oidc.tokenIntrospection(config, t3.refresh_token)).active, false);
  const r = await fetch(`${server.fhirBase}/Patient/example-alice`, { headers: { Authorization: `Bearer ${t3.access_token}` } });
  assert.equal(r.status, 401);
});

test("client_credentials with private_key_jwt, then fhirclient with the system token", async () => {
  const tokens = await oidc.clientCredentialsGrant(config, { scope: "system/Patient.rs system/Observation.rs" });
  assert.equal(tokens.scope.split(" ").sort().join(" "), "system/Observation.rs system/Patient.rs");
  assert.equal(tokens.refresh_token, undefined);
  const n = await withFhirclient(tokens.access_token, undefined, async (client) => {
    const b = await client.request("Patient?_count=3");
    return (b.entry ?? []).length;
  });
  assert.equal(n, 3);
  // Outside the grant: refused by the FHIR API.
  const forbidden = await withFhirclient(tokens.access_token, undefined, async (client) => {
    try {
      await client.request("Condition?_count=1");
      return 200;
    } catch (e) {
      return e.status;
    }
  });
  assert.equal(forbidden, 403);
  // A client that cannot sign is refused: no assertion, no token.
  await assert.rejects(
    oidc.clientCredentialsGrant(await oidc.discovery(new URL(server.base), CLIENT_ID, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] }), { scope: "system/Patient.rs" }),
    (e) => e.error === "invalid_client");
});

/**
 * withFhirclient serves one request with a handler that builds a fhirclient Client from the
 * token (fhirclient's Node entry works on a request and response) and runs fn with it.
 */
async function withFhirclient(accessToken, patient, fn) {
  const srv = createServer(async (req, res) => {
    try {
      const client = smart(req, res).client({ serverUrl: server.fhirBase, tokenResponse: { access_token: accessToken, patient } });
      const out = await fn(client);
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(out));
    } catch (e) {
      res.writeHead(500, { "Content-Type": "text/plain" }).end(String(e?.message ?? e));
    }
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const r = await fetch(`http://127.0.0.1:${srv.address().port}/`);
    const body = await r.text();
    assert.equal(r.status, 200, body);
    return JSON.parse(body);
  } finally {
    srv.close();
  }
}
