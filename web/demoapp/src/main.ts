// fhirgate demo SMART app: standalone and EHR launch with fhirclient, then the patient's record.
//
// Nothing here writes a token to the console, the page or the URL: the token details view shows
// decoded claims and expiry only.
import FHIR from "fhirclient";
import type Client from "fhirclient/lib/Client";
import { lineChart, type Series } from "./chart";
import { covers, split, withheld, type Need } from "./scopes";

/** Resource scopes the app asks for, one per view, so that a user can withhold any of them. */
const RESOURCE_SCOPES = [
  "patient/Patient.rs",
  "patient/Observation.rs",
  "patient/Condition.rs",
  "patient/MedicationRequest.rs",
  "patient/AllergyIntolerance.rs",
];
const STANDALONE_SCOPE = ["openid", "fhirUser", "launch/patient", "offline_access", ...RESOURCE_SCOPES].join(" ");
const EHR_SCOPE = ["openid", "fhirUser", "launch", "offline_access", ...RESOURCE_SCOPES].join(" ");
/** sessionStorage key of the scopes asked for, to show which were withheld. */
const REQUESTED_KEY = "fhirgate-demo-requested";

interface AppConfig {
  fhirBase: string;
  clientId: string;
}

type Resource = Record<string, any>;

const main = document.getElementById("main") as HTMLElement;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string | null)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null) e.append(c);
  return e;
}

function redirectUri(): string {
  // The app is served at {base}/demo/app/ and its launch URL is {base}/demo/app/launch.
  return new URL(".", location.href).href;
}

async function loadConfig(): Promise<AppConfig> {
  const r = await fetch("config.json", { cache: "no-store", credentials: "omit" });
  if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
  return (await r.json()) as AppConfig;
}

function hasSession(): boolean {
  return sessionStorage.getItem("SMART_KEY") !== null;
}

function cleanURL(): void {
  history.replaceState({}, "", redirectUri());
}

function landing(cfg: AppConfig, message?: { text: string; kind: "error" | "notice" }): void {
  const launch = h("button", { id: "launch-standalone", type: "button" }, "Launch as a patient (standalone)");
  launch.addEventListener("click", () => {
    launch.setAttribute("disabled", "");
    sessionStorage.setItem(REQUESTED_KEY, STANDALONE_SCOPE);
    FHIR.oauth2
      .authorize({ clientId: cfg.clientId, scope: STANDALONE_SCOPE, redirectUri: redirectUri(), iss: cfg.fhirBase, pkceMode: "required" })
      .catch((e: unknown) => landing(cfg, { text: `The launch failed: ${errText(e)}`, kind: "error" }));
  });
  const ehr = new URL("/ehr", cfg.fhirBase).href;
  main.replaceChildren(
    h("section", { id: "landing" },
      h("h2", {}, "Start"),
      message ? h("p", { id: "message", class: message.kind, role: "alert" }, message.text) : null,
      h("p", {}, "Sign in as a patient to see your own record. The app asks for read access to your demographics, vital signs, labs, conditions, medications and allergies; untick any of them on the consent page and that view shows as unavailable."),
      launch,
      h("p", { class: "muted" }, "Clinicians launch this app in a patient's context from the ", h("a", { href: ehr }, "EHR launcher"), "."),
      h("p", { class: "muted" }, "FHIR server: ", h("code", {}, cfg.fhirBase))));
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function start(): Promise<void> {
  const cfg = await loadConfig();
  const params = new URLSearchParams(location.search);
  if (params.has("launch")) {
    // EHR launch: fhirclient reads iss and launch from the URL. The app only launches against
    // the server that serves it, so a launch link cannot send it (and its user) elsewhere.
    if (params.get("iss") !== cfg.fhirBase) {
      cleanURL();
      landing(cfg, { text: "This launch names a FHIR server this app does not know; it was ignored.", kind: "error" });
      return;
    }
    sessionStorage.setItem(REQUESTED_KEY, EHR_SCOPE);
    await FHIR.oauth2.authorize({ clientId: cfg.clientId, scope: EHR_SCOPE, redirectUri: redirectUri(), pkceMode: "required" });
    return;
  }
  if (params.has("code") || params.has("error") || hasSession()) {
    let client: Client;
    try {
      client = await FHIR.oauth2.ready();
    } catch (e) {
      const denied = params.get("error") === "access_denied";
      sessionStorage.clear();
      cleanURL();
      landing(cfg, { text: denied ? "Access was denied: the app was not authorized, so it shows nothing." : `Sign-in failed: ${errText(e)}`, kind: "error" });
      return;
    }
    // fhirclient removed code and state from the URL; drop the rest of the response too.
    cleanURL();
    await dashboard(cfg, client);
    return;
  }
  landing(cfg);
}

// ---- the dashboard ----

interface View {
  id: string;
  title: string;
  need: Need;
  load: (client: Client, patient: string, body: HTMLElement) => Promise<void>;
}

const VIEWS: View[] = [
  { id: "demographics", title: "Demographics", need: { type: "Patient" }, load: loadDemographics },
  { id: "vitals", title: "Vital signs", need: { type: "Observation", category: "vital-signs" }, load: loadVitals },
  { id: "labs", title: "Labs", need: { type: "Observation", category: "laboratory" }, load: loadLabs },
  { id: "conditions", title: "Conditions", need: { type: "Condition" }, load: loadConditions },
  { id: "medications", title: "Medications", need: { type: "MedicationRequest" }, load: loadMedications },
  { id: "allergies", title: "Allergies", need: { type: "AllergyIntolerance" }, load: loadAllergies },
];

async function dashboard(cfg: AppConfig, client: Client, notice?: string): Promise<void> {
  const patient = client.getPatientId();
  const granted = split(client.state.tokenResponse?.scope);
  const refresh = h("button", { id: "refresh", type: "button", class: "secondary" }, "Refresh token");
  const logout = h("button", { id: "logout", type: "button" }, "Sign out");
  const who = h("span", { class: "who", id: "who" }, patient ? "Patient " : "No patient in context", patient ? h("code", {}, patient) : null);
  const tokenBox = h("section", { id: "token" });
  const msg = h("p", { id: "notice", class: "notice", role: "status" }, notice ?? "");
  main.replaceChildren(h("div", { class: "toolbar" }, who, refresh, logout), msg);
  refresh.addEventListener("click", async () => {
    refresh.setAttribute("disabled", "");
    try {
      await client.refresh();
      msg.className = "notice";
      msg.textContent = `Access token refreshed at ${new Date().toLocaleTimeString()}.`;
      renderToken(tokenBox, client);
    } catch (e) {
      msg.className = "error";
      msg.textContent = `The refresh failed: ${errText(e)}`;
    } finally {
      refresh.removeAttribute("disabled");
    }
  });
  logout.addEventListener("click", async () => {
    logout.setAttribute("disabled", "");
    const revoked = await revokeAll(client);
    sessionStorage.clear();
    cleanURL();
    landing(cfg, {
      text: revoked ? "You are signed out of the app and its tokens are revoked." : "You are signed out of the app; the server did not confirm the token revocation.",
      kind: revoked ? "notice" : "error",
    });
  });

  const grid = h("div", { class: "grid" });
  main.append(grid);
  const loads: Promise<void>[] = [];
  for (const v of VIEWS) {
    const body = h("div", { class: "body" });
    const sec = h("section", { id: v.id, "data-state": "loading" }, h("h2", {}, v.title), body);
    (v.id === "vitals" ? main : grid).append(sec);
    if (v.id === "vitals") main.insertBefore(sec, grid);
    if (!patient) {
      unavailable(sec, body, "no patient is in context");
      continue;
    }
    if (!covers(granted, v.need)) {
      unavailable(sec, body, "its scope was not granted");
      continue;
    }
    body.append(h("p", { class: "muted" }, "Loading…"));
    loads.push(
      v.load(client, patient, body).then(
        () => sec.setAttribute("data-state", "loaded"),
        (e: any) => {
          const status = e?.status ?? e?.statusCode;
          if (status === 401 || status === 403 || status === 404) {
            unavailable(sec, body, `the server refused it (HTTP ${status})`);
          } else {
            sec.setAttribute("data-state", "error");
            body.replaceChildren(h("p", { class: "error" }, `Could not load: ${errText(e)}`));
          }
        }));
  }
  main.append(tokenBox);
  renderToken(tokenBox, client);
  await Promise.all(loads);
  if (patient && covers(granted, VIEWS[0].need)) {
    const name = grid.querySelector("#demographics [data-name]")?.textContent;
    if (name) who.replaceChildren("Patient ", h("strong", {}, name), " ", h("code", {}, patient));
  }
}

function unavailable(sec: HTMLElement, body: HTMLElement, why: string): void {
  sec.setAttribute("data-state", "unavailable");
  body.replaceChildren(h("p", { class: "unavailable" }, `Unavailable: ${why}.`));
}

async function search(client: Client, query: string): Promise<Resource[]> {
  const bundle = (await client.request(query, { pageLimit: 1 })) as Resource;
  return ((bundle.entry ?? []) as Resource[]).map((e) => e.resource).filter((r) => r && r.resourceType !== "OperationOutcome");
}

function table(headers: string[], rows: (string | Node)[][], empty: string): HTMLElement {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h("table", {}, h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))));
}

function text(cc: Resource | undefined): string {
  if (!cc) return "";
  return cc.text ?? cc.coding?.[0]?.display ?? cc.coding?.[0]?.code ?? "";
}

function humanName(p: Resource): string {
  const n = (p.name ?? [])[0];
  if (!n) return "(no name)";
  return n.text ?? [...(n.given ?? []), n.family].filter(Boolean).join(" ");
}

function date(s: string | undefined): string {
  return s ? s.slice(0, 10) : "";
}

function quantity(o: Resource): string {
  if (o.valueQuantity) return `${o.valueQuantity.value} ${o.valueQuantity.unit ?? o.valueQuantity.code ?? ""}`.trim();
  if (o.valueInteger !== undefined) return String(o.valueInteger);
  if (o.valueString) return o.valueString;
  if (o.valueCodeableConcept) return text(o.valueCodeableConcept);
  if (o.component) return o.component.map((c: Resource) => quantity(c).split(" ")[0]).join("/") + " " + (o.component[0]?.valueQuantity?.unit ?? "");
  return "";
}

async function loadDemographics(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const p = (await client.request(`Patient/${encodeURIComponent(patient)}`)) as Resource;
  const addr = (p.address ?? [])[0];
  const rows: [string, string | Node][] = [
    ["Name", h("span", { "data-name": "" }, humanName(p))],
    ["Gender", p.gender ?? ""],
    ["Birth date", p.birthDate ?? ""],
    ["Address", addr ? [...(addr.line ?? []), addr.city, addr.state, addr.postalCode].filter(Boolean).join(", ") : ""],
    ["Phone", (p.telecom ?? []).find((t: Resource) => t.system === "phone")?.value ?? ""],
    ["Language", text((p.communication ?? [])[0]?.language)],
  ];
  body.replaceChildren(h("table", {}, h("tbody", {}, ...rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))));
}

const LOINC_SYS = "8480-6", LOINC_DIA = "8462-4", LOINC_HR = "8867-4";

function loinc(o: Resource): string {
  return (o.code?.coding ?? []).find((c: Resource) => c.system === "http://loinc.org")?.code ?? "";
}

async function loadVitals(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const obs = await search(client, `Observation?patient=${encodeURIComponent(patient)}&category=vital-signs&_count=200`);
  const sys: Series = { name: "Systolic", unit: "mmHg", points: [] };
  const dia: Series = { name: "Diastolic", unit: "mmHg", points: [] };
  const hr: Series = { name: "Heart rate", unit: "/min", points: [] };
  const latest = new Map<string, Resource>();
  for (const o of obs) {
    const t = Date.parse(o.effectiveDateTime ?? o.issued ?? "");
    const key = text(o.code);
    const prev = latest.get(key);
    if (!prev || Date.parse(prev.effectiveDateTime ?? "") < t) latest.set(key, o);
    if (Number.isNaN(t)) continue;
    if (loinc(o) === LOINC_HR && o.valueQuantity) hr.points.push({ t, v: o.valueQuantity.value });
    for (const c of o.component ?? []) {
      const code = loinc(c);
      if (code === LOINC_SYS && c.valueQuantity) sys.points.push({ t, v: c.valueQuantity.value });
      if (code === LOINC_DIA && c.valueQuantity) dia.points.push({ t, v: c.valueQuantity.value });
    }
  }
  if (obs.length === 0) {
    body.replaceChildren(h("p", { class: "muted" }, "No vital signs recorded."));
    return;
  }
  body.replaceChildren(
    lineChart([sys, dia, hr], "Blood pressure and heart rate over time"),
    h("p", { class: "legend" }, h("span", { class: "k1" }, "● systolic (mmHg)"), h("span", { class: "k2" }, "● diastolic (mmHg)"), h("span", { class: "k3" }, "● heart rate (/min)")),
    h("h3", {}, "Latest"),
    table(["Measurement", "Value", "Date"], [...latest.values()].map((o) => [text(o.code), quantity(o), date(o.effectiveDateTime)]), "None."));
}

async function loadLabs(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const obs = await search(client, `Observation?patient=${encodeURIComponent(patient)}&category=laboratory&_count=200`);
  obs.sort((a, b) => (b.effectiveDateTime ?? "").localeCompare(a.effectiveDateTime ?? ""));
  // The latest result of each test, with how many results there are.
  const latest = new Map<string, { o: Resource; n: number }>();
  for (const o of obs) {
    const k = text(o.code);
    const e = latest.get(k);
    if (e) e.n++;
    else latest.set(k, { o, n: 1 });
  }
  body.replaceChildren(table(["Test (latest)", "Result", "Flag", "Date", "Results"],
    [...latest.values()].map(({ o, n }) => [text(o.code), quantity(o), text((o.interpretation ?? [])[0]), date(o.effectiveDateTime), String(n)]), "No lab results."));
}

async function loadConditions(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const rs = await search(client, `Condition?patient=${encodeURIComponent(patient)}&_count=50`);
  body.replaceChildren(table(["Condition", "Status", "Since"],
    rs.map((c) => [text(c.code), text(c.clinicalStatus), date(c.onsetDateTime ?? c.recordedDate)]), "No conditions."));
}

async function loadMedications(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const rs = await search(client, `MedicationRequest?patient=${encodeURIComponent(patient)}&_count=50`);
  body.replaceChildren(table(["Medication", "Status", "Dosage", "Written"],
    rs.map((m) => [text(m.medicationCodeableConcept) || (m.medicationReference?.display ?? ""), m.status ?? "", (m.dosageInstruction ?? [])[0]?.text ?? "", date(m.authoredOn)]),
    "No medications."));
}

async function loadAllergies(client: Client, patient: string, body: HTMLElement): Promise<void> {
  const rs = await search(client, `AllergyIntolerance?patient=${encodeURIComponent(patient)}&_count=50`);
  body.replaceChildren(table(["Substance", "Criticality", "Reaction"],
    rs.map((a) => [text(a.code), a.criticality ?? "", ((a.reaction ?? [])[0]?.manifestation ?? []).map(text).join(", ")]), "No known allergies."));
}

// ---- token details ----

function decodeJWT(token: string | undefined): Record<string, unknown> | null {
  const part = token?.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

function claimValue(k: string, v: unknown): string {
  if ((k === "exp" || k === "iat" || k === "nbf" || k === "auth_time") && typeof v === "number") return `${v} (${new Date(v * 1000).toISOString()})`;
  return typeof v === "string" ? v : JSON.stringify(v);
}

function claimsTable(id: string, claims: Record<string, unknown>): HTMLElement {
  return h("table", { id }, h("tbody", {}, ...Object.entries(claims).map(([k, v]) =>
    h("tr", {}, h("th", {}, k), h("td", { "data-claim": k }, h("code", {}, claimValue(k, v)))))));
}

function renderToken(box: HTMLElement, client: Client): void {
  const tr = client.state.tokenResponse ?? {};
  const granted = split(tr.scope);
  const requested = split(sessionStorage.getItem(REQUESTED_KEY) ?? undefined);
  const held = withheld(requested, granted);
  const expiresAt = client.state.expiresAt;
  const left = expiresAt ? Math.round(expiresAt - Date.now() / 1000) : undefined;
  const claims = decodeJWT(tr.access_token);
  const idClaims = client.getIdToken() as Record<string, unknown> | null;
  const parts: (Node | null)[] = [
    h("h2", {}, "Authorization"),
    h("table", {}, h("tbody", {},
      h("tr", {}, h("th", {}, "FHIR server"), h("td", {}, h("code", {}, client.state.serverUrl))),
      h("tr", {}, h("th", {}, "User"), h("td", { id: "fhir-user" }, client.getFhirUser() ?? "(none)")),
      h("tr", {}, h("th", {}, "Patient in context"), h("td", {}, tr.patient ?? "(none)")),
      tr.encounter ? h("tr", {}, h("th", {}, "Encounter in context"), h("td", {}, String(tr.encounter))) : null,
      h("tr", {}, h("th", {}, "Access token expires"), h("td", { id: "expires" }, expiresAt ? `${new Date(expiresAt * 1000).toISOString()} (in ${left} s)` : "(not stated)")),
      h("tr", {}, h("th", {}, "Refresh token"), h("td", { id: "has-refresh" }, tr.refresh_token ? "held (not shown)" : "none")))),
    h("h3", {}, "Granted scopes"),
    h("ul", { class: "scopes", id: "granted" }, ...granted.map((s) => h("li", {}, h("code", {}, s)))),
    held.length ? h("h3", {}, "Withheld scopes") : null,
    held.length ? h("ul", { class: "scopes", id: "withheld" }, ...held.map((s) => h("li", { class: "withheld" }, h("code", {}, s)))) : null,
    h("h3", {}, "Access token claims"),
    claims ? claimsTable("access-claims", claims) : h("p", { class: "muted" }, "The access token is opaque."),
    idClaims ? h("h3", {}, "ID token claims") : null,
    idClaims ? claimsTable("id-claims", idClaims) : null,
  ];
  box.replaceChildren(...parts.filter((p): p is Node => p !== null));
}

// ---- sign-out ----

/** revokeAll revokes the refresh and access tokens at the server's revocation endpoint (RFC 7009). */
async function revokeAll(client: Client): Promise<boolean> {
  try {
    const conf = await (await fetch(new URL(".well-known/smart-configuration", client.state.serverUrl.replace(/\/?$/, "/")), { credentials: "omit" })).json();
    const endpoint = conf.revocation_endpoint as string | undefined;
    if (!endpoint) return false;
    const tr = client.state.tokenResponse ?? {};
    let ok = true;
    for (const [token, hint] of [[tr.refresh_token, "refresh_token"], [tr.access_token, "access_token"]] as const) {
      if (!token) continue;
      const r = await fetch(endpoint, {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token, token_type_hint: hint, client_id: client.state.clientId ?? "" }),
      });
      ok &&= r.ok;
    }
    return ok;
  } catch {
    return false;
  }
}

start().catch((e: unknown) => {
  main.replaceChildren(h("p", { class: "error", role: "alert" }, `The app could not start: ${errText(e)}`));
});
