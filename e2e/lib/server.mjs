// Starts a real `fhirgate serve --demo` on free loopback ports with a fresh data directory.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let built;
/** binary builds bin/fhirgate-e2e once per process (FHIRGATE_BIN overrides it). */
export function binary() {
  if (process.env.FHIRGATE_BIN) return process.env.FHIRGATE_BIN;
  if (!built) {
    built = join(repoRoot, "bin", "fhirgate-e2e");
    execFileSync("go", ["build", "-o", built, "./cmd/fhirgate"], { cwd: repoRoot, stdio: "inherit" });
  }
  return built;
}

/**
 * startServer runs fhirgate with demo data and returns its URLs and the demo logins it printed.
 * Rate limits are off: one test drives dozens of login pages from one IP within a minute, far
 * past the per-IP login budget a person needs.
 */
export async function startServer({ patients = 8, env = {} } = {}) {
  const port = await freePort();
  const adminPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "fhirgate-e2e-"));
  const base = `http://127.0.0.1:${port}`;
  const adminToken = randomBytes(32).toString("hex");
  const child = spawn(binary(), [
    "serve", "--demo", "--demo-patients", String(patients),
    "--addr", `127.0.0.1:${port}`, "--base-url", base, "--admin-addr", `127.0.0.1:${adminPort}`, "--data-dir", dataDir,
  ], {
    cwd: dataDir,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, FHIRGATE_ADMIN_TOKEN: adminToken, FHIRGATE_GATEWAY_RATE_LIMIT_ENABLED: "false", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let errOut = "";
  child.stderr.on("data", (d) => { errOut += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fhirgate did not start in 90s:\n${out}\n${errOut.slice(-4000)}`)), 90_000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("fhirgate is serving on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`fhirgate exited with ${code}:\n${out}\n${errOut.slice(-4000)}`));
    });
  });
  const password = (user) => {
    const m = new RegExp(`\\b${user} / (\\S+)`).exec(out);
    if (!m) throw new Error(`no password for ${user} in the demo output`);
    return m[1];
  };
  return {
    base,
    fhirBase: `${base}/fhir`,
    admin: `http://127.0.0.1:${adminPort}`,
    adminToken,
    stdout: () => out,
    logs: () => errOut,
    password,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
