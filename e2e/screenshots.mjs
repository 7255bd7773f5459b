// Regenerates the README's screenshots (docs/img/demo-*.png) from a real run: node e2e/screenshots.mjs
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { startServer, repoRoot } from "./lib/server.mjs";
import { launchBrowser } from "./lib/browser.mjs";

const out = join(repoRoot, "docs", "img");
mkdirSync(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser();
try {
  const page = await browser.newPage({ viewport: { width: 960, height: 720 } });
  const shot = (name) => page.screenshot({ path: join(out, `demo-${name}.png`) });
  await page.goto(`${server.base}/demo/app/`);
  await page.waitForSelector("#launch-standalone");
  await page.click("#launch-standalone");
  await page.waitForSelector("input[name=username]");
  await page.fill("input[name=username]", "alice");
  await shot("login");
  await page.fill("input[name=password]", server.password("alice"));
  await page.click("button[type=submit]");
  await page.waitForSelector("button[name=decision][value=allow]");
  await shot("consent");
  await page.click("button[name=decision][value=allow]");
  await page.waitForSelector("#token h2");
  await page.waitForFunction(() => document.querySelectorAll("section[data-state=loading]").length === 0);
  await shot("app");
  await page.goto(`${server.base}/ehr`);
  await page.fill("input[name=username]", "drsmith");
  await page.fill("input[name=password]", server.password("drsmith"));
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=patient]");
  await shot("ehr");
} finally {
  await browser.close();
  await server.stop();
}
