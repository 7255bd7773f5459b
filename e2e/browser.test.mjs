// Browser tests: headless Debian chromium, driven by playwright-core, through fhirgate's real
// login, consent and EHR launcher pages and the demo SMART app (fhirclient). Screenshots of every
// step go to e2e/artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "./lib/server.mjs";
import { launchBrowser } from "./lib/browser.mjs";

const artifacts = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
mkdirSync(artifacts, { recursive: true });

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** newPage opens a fresh browser context (no cookies, no storage) that fails the test on page errors. */
async function newPage(t) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // A CSP violation is reported on the console: the app must run under its policy untouched.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  t.after(async () => {
    await ctx.close();
    assert.deepEqual(errors, [], "page errors");
  });
  let n = 0;
  const name = t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  page.shot = (step) => page.screenshot({ path: join(artifacts, `${name}-${String(++n).padStart(2, "0")}-${step}.png`), fullPage: true });
  return page;
}

/** standaloneLogin opens the app, presses Launch and signs in; it leaves the page at consent. */
async function standaloneLogin(page, user) {
  await page.goto(`${server.base}/demo/app/`);
  await page.waitForSelector("#launch-standalone");
  await page.shot("app-start");
  await page.click("#launch-standalone");
  await page.waitForURL(/\/auth\//);
  await page.waitForSelector("input[name=username]");
  await page.shot("login");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", server.password(user));
  await page.click("button[type=submit]");
  await page.waitForSelector("button[name=decision][value=allow]");
  await page.shot("consent");
}

/** waitForDashboard waits until every view of the app has finished loading. */
async function waitForDashboard(page) {
  await page.waitForURL(`${server.base}/demo/app/`);
  await page.waitForSelector("#token h2");
  await page.waitForFunction(() => document.querySelectorAll("section[data-state=loading]").length === 0 &&
    document.querySelectorAll("section[data-state]").length === 6);
}

async function states(page) {
  return page.$$eval("section[data-state]", (els) => Object.fromEntries(els.map((e) => [e.id, e.dataset.state])));
}

/** accessToken reads the app's access token from its session storage (kept in the test, never printed). */
async function accessToken(page) {
  return page.evaluate(() => {
    const key = JSON.parse(sessionStorage.getItem("SMART_KEY"));
    return JSON.parse(sessionStorage.getItem(key)).tokenResponse.access_token;
  });
}

async function fhirStatus(token, path) {
  const r = await fetch(`${server.fhirBase}/${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: "application/fhir+json" } });
  return r.status;
}

const ALL_LOADED = { demographics: "loaded", vitals: "loaded", labs: "loaded", conditions: "loaded", medications: "loaded", allergies: "loaded" };

test("standalone patient launch, token refresh and logout", async (t) => {
  const page = await newPage(t);
  await standaloneLogin(page, "alice");
  const labels = await page.$$eval("input[name=scope]", (els) => els.filter((e) => e.checked).map((e) => e.value));
  assert.ok(labels.includes("patient/AllergyIntolerance.rs"), `consent offers the app's scopes: ${labels}`);
  await page.click("button[name=decision][value=allow]");
  await waitForDashboard(page);
  await page.shot("app");
  assert.deepEqual(await states(page), ALL_LOADED);
  assert.match(await page.textContent("#demographics"), /Alice/);
  assert.equal(await page.textContent("#fhir-user"), "Patient/example-alice");
  assert.ok(await page.$("#vitals svg.chart path"), "the vital signs chart has a line");
  assert.ok((await page.$$("#labs tbody tr")).length > 0, "labs are listed");
  assert.equal(await page.$("#withheld"), null, "nothing was withheld");
  assert.equal(await page.textContent("#has-refresh"), "held (not shown)");
  const html = await page.content();
  const token = await accessToken(page);
  assert.ok(!html.includes(token), "the page never shows the access token");
  assert.ok(!page.url().includes("code="), "the code is gone from the URL");

  // Refresh: a new access token (new jti) with the same grant.
  const jti = await page.textContent("td[data-claim=jti]");
  await page.click("#refresh");
  await page.waitForFunction(() => (document.querySelector("#notice")?.textContent ?? "") !== "");
  await page.shot("refreshed");
  assert.match(await page.textContent("#notice"), /refreshed/);
  const jti2 = await page.textContent("td[data-claim=jti]");
  assert.notEqual(jti2, jti, "the refresh issued a new access token");
  const token2 = await accessToken(page);
  assert.notEqual(token2, token);
  assert.equal(await fhirStatus(token2, "Patient/example-alice"), 200);

  // Logout revokes the tokens: the last access token no longer opens the FHIR API.
  await page.click("#logout");
  await page.waitForSelector("#message");
  await page.shot("signed-out");
  assert.match(await page.textContent("#message"), /signed out of the app and its tokens are revoked/);
  assert.equal(await fhirStatus(token2, "Patient/example-alice"), 401);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the app forgot its tokens");
  // A reload does not bring the session back.
  await page.reload();
  await page.waitForSelector("#launch-standalone");
});

test("a denied consent leaves the app without access", async (t) => {
  const page = await newPage(t);
  await standaloneLogin(page, "bob");
  await page.click("button[name=decision][value=deny]");
  await page.waitForSelector("#message");
  await page.shot("denied");
  assert.match(await page.textContent("#message"), /Access was denied/);
  assert.equal(await page.$("#token"), null, "no dashboard");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("SMART_KEY")), null);
});

test("a withheld scope shows that data as unavailable", async (t) => {
  const page = await newPage(t);
  await standaloneLogin(page, "alice");
  await page.uncheck("input[name=scope][value='patient/AllergyIntolerance.rs']");
  await page.uncheck("input[name=scope][value='patient/MedicationRequest.rs']");
  await page.shot("consent-withholding");
  await page.click("button[name=decision][value=allow]");
  await waitForDashboard(page);
  await page.shot("app-withheld");
  assert.deepEqual(await states(page), { ...ALL_LOADED, medications: "unavailable", allergies: "unavailable" });
  assert.match(await page.textContent("#allergies"), /Unavailable/);
  const withheld = await page.$$eval("#withheld li", (els) => els.map((e) => e.textContent).sort());
  assert.deepEqual(withheld, ["patient/AllergyIntolerance.rs", "patient/MedicationRequest.rs"]);
  // The server enforces it, not only the app.
  const token = await accessToken(page);
  assert.equal(await fhirStatus(token, "AllergyIntolerance?patient=example-alice"), 403);
  assert.equal(await fhirStatus(token, "Condition?patient=example-alice"), 200);
});

test("EHR launch: a clinician picks a patient and the app opens in that patient's context", async (t) => {
  const page = await newPage(t);
  await page.goto(`${server.base}/ehr`);
  await page.shot("ehr-login");
  await page.fill("input[name=username]", "drsmith");
  await page.fill("input[name=password]", server.password("drsmith"));
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=patient][value=example-bob]");
  await page.check("input[name=patient][value=example-bob]");
  await page.check("input[name=client_id][value=demo-app]");
  await page.shot("ehr-launcher");
  await page.click("form[action='/ehr/launch'] button[type=submit]");
  // The app's launch URL starts the authorization; the clinician's session carries on to consent.
  await page.waitForSelector("button[name=decision][value=allow]");
  await page.shot("consent");
  assert.match(await page.textContent("body"), /example-bob/);
  await page.click("button[name=decision][value=allow]");
  await waitForDashboard(page);
  await page.shot("app");
  assert.deepEqual(await states(page), ALL_LOADED);
  assert.match(await page.textContent("#who"), /example-bob/);
  assert.equal(await page.textContent("#fhir-user"), "Practitioner/example-smith");
  assert.equal(await page.textContent("td[data-claim=patient]"), "example-bob");
  // The launch fixed the patient: the token does not reach another patient's record.
  const token = await accessToken(page);
  assert.equal(await fhirStatus(token, "Patient/example-bob"), 200);
  assert.notEqual(await fhirStatus(token, "Patient/example-alice"), 200);
});

test("the app refuses an EHR launch that names another FHIR server", async (t) => {
  const page = await newPage(t);
  await page.goto(`${server.base}/demo/app/launch?iss=${encodeURIComponent("https://fhir.invalid/fhir")}&launch=abc`);
  await page.waitForSelector("#message");
  await page.shot("foreign-iss");
  assert.match(await page.textContent("#message"), /does not know/);
  assert.equal(page.url(), `${server.base}/demo/app/`);
});
