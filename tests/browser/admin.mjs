// Headless-Chromium test of the operators' page `/admin/`, driven by tests/tests/admin_browser.rs.
//
//   node tests/browser/admin.mjs <base_url> <admin_token> <tenant_id>
//
// Environment:
//   PAYBRIDGE_BROWSER_SECRETS  JSON array of strings the page must never show or receive
//                              (a multi-line secret is also checked line by line).
//   PAYBRIDGE_CHROMIUM         the browser (default /usr/bin/chromium).
//   PAYBRIDGE_SCREENSHOT       where to write the final screenshot (default: a temp file).
//   PAYBRIDGE_PLATFORM_ID      a platform to open, rename and save (its secrets stay masked).
//   PAYBRIDGE_CONSOLE_ORDER    a paid order of the tenant whose webhook event was delivered once:
//                              searched, its timeline opened, its event redelivered.
//   PAYBRIDGE_DASHBOARD_SCREENSHOT  where to write the screenshot of the dashboard's charts.
//
// Protocol with the Rust test: at a checkpoint the script prints `@@checkpoint <name>` on stdout
// and waits for one line on stdin: `ok` continues, anything else (or EOF) fails the script.
// The last line is `@@pass` on success; on failure the reason goes to stderr and the exit status
// is 1. The screenshot path is printed as `@@screenshot <path>` in both cases.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, adminToken, tenantId] = process.argv.slice(2);
if (!base || !adminToken || !tenantId) {
  console.error("usage: node admin.mjs <base_url> <admin_token> <tenant_id>");
  process.exit(2);
}
const SIGN_FIELD = "providers.wechat_miniprogram.sign_type";
const chromiumPath = process.env.PAYBRIDGE_CHROMIUM || "/usr/bin/chromium";
const screenshotPath =
  process.env.PAYBRIDGE_SCREENSHOT || join(tmpdir(), `paybridge-admin-${process.pid}.png`);

// Each secret, plus each long line of a multi-line one (a PEM body), so a secret reformatted
// with other line breaks is still caught.
const secrets = [];
for (const s of JSON.parse(process.env.PAYBRIDGE_BROWSER_SECRETS || "[]")) {
  secrets.push(s);
  if (s.includes("\n")) {
    for (const line of s.split("\n")) if (line.trim().length >= 24 && !line.startsWith("-----")) secrets.push(line.trim());
  }
}

// ---------------------------------------------------------------------------------------------

let step = "start";
const log = (msg) => console.log(`[admin.mjs] ${msg}`);
function fail(msg) {
  throw new Error(`${step}: ${msg}`);
}
function check(cond, msg) {
  if (!cond) fail(msg);
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function checkpoint(name) {
  console.log(`@@checkpoint ${name}`);
  const next = await stdinLines.next();
  if (next.done) fail(`checkpoint ${name}: the test runner closed stdin`);
  if (next.value.trim() !== "ok") fail(`checkpoint ${name}: ${next.value}`);
}

/** The admin API, outside the browser, to see what is stored. */
async function adminGet(path, accept = "application/json") {
  const resp = await fetch(`${base}/admin/api${path}`, {
    headers: { Authorization: `Bearer ${adminToken}`, Accept: accept },
  });
  const text = await resp.text();
  check(resp.ok, `GET ${path}: HTTP ${resp.status}: ${text}`);
  return { text, etag: (resp.headers.get("ETag") || "").replace(/"/g, "") };
}
const storedToml = () => adminGet(`/tenants/${encodeURIComponent(tenantId)}`, "application/toml");

function lineNumberOf(text, re) {
  const i = text.split("\n").findIndex((l) => re.test(l));
  return i < 0 ? null : i + 1;
}

// ---------------------------------------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  timeout: 15_000,
  // Playwright gives the browser a fresh temporary profile (user data dir) of its own.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.setDefaultTimeout(5_000);

// Everything the browser receives from the gateway, and every script problem.
const problems = [];
const bodies = [];
const apiRequests = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => {
  // A 4xx answer logs "Failed to load resource"; the 422s here are expected. A CSP violation
  // ("Refused to ...") or any other error is not.
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console error: ${m.text()}`);
});
page.on("request", (r) => {
  if (r.url().includes("/admin/api/")) apiRequests.push(`${r.method()} ${r.url()}`);
});
page.on("response", (r) => {
  bodies.push(r.text().then((t) => ({ url: r.url(), text: t }), () => ({ url: r.url(), text: "" })));
});

/** No planted secret anywhere: the DOM, form values, storage, and every response so far. */
async function assertNoSecrets() {
  const seen = await page.evaluate(() => {
    const values = [...document.querySelectorAll("input, textarea")].map((e) => e.value);
    return [document.body.innerText, ...values, JSON.stringify({ ...localStorage })].join("\n");
  });
  const html = await page.content();
  const received = await Promise.all(bodies);
  for (const s of secrets) {
    check(!html.includes(s), `a planted secret (${s.length} chars, starts ${JSON.stringify(s.slice(0, 3))}) is in page.content()`);
    check(!seen.includes(s), `a planted secret (${s.length} chars, starts ${JSON.stringify(s.slice(0, 3))}) is in the page's text or form values`);
    for (const r of received) {
      check(!r.text.includes(s), `a planted secret (starts ${JSON.stringify(s.slice(0, 3))}) was sent to the browser by ${r.url}`);
    }
  }
  check(problems.length === 0, problems.join("; "));
}

const editor = page.getByTestId("editor");
const status = page.getByTestId("status");
const signError = page.locator(`[data-testid="field-error"][data-field="${SIGN_FIELD}"]`);

/** Type a new sign_type the way an operator would: select the old value, type over it. */
async function setSignType(value) {
  const text = await editor.inputValue();
  const m = /^\s*sign_type\s*=\s*("[^"\n]*")/m.exec(text);
  check(m, `no sign_type line in the editor:\n${text}`);
  const start = m.index + m[0].length - m[1].length;
  await editor.evaluate((el, [a, b]) => { el.focus(); el.setSelectionRange(a, b); }, [start, start + m[1].length]);
  await page.keyboard.type(`"${value}"`);
  const edited = await editor.inputValue();
  const expected = text.slice(0, start) + `"${value}"` + text.slice(start + m[1].length);
  check(edited === expected, `typing did not give the expected text:\n${edited}`);
  return edited;
}

/** The tenant pane is not shown (not merely marked `hidden`) to someone without a token. */
async function assertMainHidden(when) {
  const main = page.getByTestId("main");
  if (await main.isHidden()) return;
  const [attr, display] = await main.evaluate((el) => [el.hidden, getComputedStyle(el).display]);
  fail(
    `the tenant pane (#main) is visible ${when}: hidden attribute ${attr}, computed display "${display}"` +
      (attr ? " (a stylesheet display rule overrides [hidden])" : ""),
  );
}

let exitCode = 0;
try {
  step = "1. open the page";
  check(secrets.length > 0, "PAYBRIDGE_BROWSER_SECRETS names no secret to look for");
  const resp = await page.goto(`${base}/admin/`);
  check(resp && resp.status() === 200, `GET /admin/: ${resp && resp.status()}`);
  check((resp.headers()["content-security-policy"] || "").includes("default-src 'none'"), "no strict CSP on /admin/");
  await page.getByTestId("token-input").waitFor({ state: "visible" });
  await assertMainHidden("before sign-in");
  check(apiRequests.length === 0, `API calls before sign-in: ${apiRequests}`);
  await assertNoSecrets();

  step = "1b. a wrong token is refused";
  await page.getByTestId("token-input").fill(`not-${adminToken}`);
  await page.getByTestId("token-submit").click();
  await page.waitForFunction(() => /refused/i.test(document.getElementById("status").textContent));
  await page.getByTestId("token-input").waitFor({ state: "visible" });
  await assertMainHidden("after a refused token");

  step = "1c. sign in";
  await page.getByTestId("token-input").fill(adminToken);
  await page.getByTestId("token-submit").click();
  await page.getByTestId("main").waitFor({ state: "visible" });
  check(await page.getByTestId("login").isHidden(), "the sign-in form stays after sign-in");

  step = "2. open the tenant";
  const tenantButton = page.getByTestId(`tenant-${tenantId}`);
  await tenantButton.waitFor({ state: "visible" });
  await tenantButton.click();
  await page.waitForFunction(
    (id) => document.getElementById("editor").value.includes(`id = "${id}"`),
    tenantId,
  );
  const opened = await editor.inputValue();
  check(/^\s*sign_type\s*=\s*"HMAC-SHA256"/m.test(opened), `the editor does not show sign_type = "HMAC-SHA256":\n${opened}`);
  for (const key of ["api_key", "app_secret", "private_key"]) {
    check(
      new RegExp(`^\\s*${key}\\s*=\\s*\\{\\s*set\\s*=\\s*true\\s*\\}`, "m").test(opened),
      `${key} is not shown masked as { set = true }:\n${opened}`,
    );
  }
  const before = await storedToml();
  check(before.etag !== "", "the admin API gives no ETag");
  await assertNoSecrets();
  log(`opened ${tenantId}, version ${before.etag}`);

  step = "3. an invalid sign_type is refused beside its line";
  const invalid = await setSignType("SHA1");
  const badLine = lineNumberOf(invalid, /^\s*sign_type\s*=/);
  await page.getByTestId("validate-button").click();
  await signError.waitFor({ state: "visible" });
  check((await signError.getAttribute("data-line")) === String(badLine), `validate: the error is at line ${await signError.getAttribute("data-line")}, sign_type is on line ${badLine}`);
  await page.getByTestId("save-button").click();
  await page.waitForFunction(() => /Not saved/.test(document.getElementById("status").textContent));
  await signError.waitFor({ state: "visible" });
  check((await status.getAttribute("class")) === "error", "the status is not shown as an error");
  check((await signError.getAttribute("data-line")) === String(badLine), `save: the error is at line ${await signError.getAttribute("data-line")}, sign_type is on line ${badLine}`);
  await page.getByTestId(`gutter-error-${badLine}`).waitFor({ state: "attached" });
  check((await signError.textContent()).includes(SIGN_FIELD), `the error text does not name ${SIGN_FIELD}`);
  check((await editor.inputValue()) === invalid, "the editor lost the operator's text after a refused save");
  const afterBad = await storedToml();
  check(afterBad.etag === before.etag, `a refused save changed the version: ${before.etag} -> ${afterBad.etag}`);
  check(/^\s*sign_type\s*=\s*"HMAC-SHA256"/m.test(afterBad.text), `a refused save changed the stored sign_type:\n${afterBad.text}`);
  await assertNoSecrets();
  await checkpoint("refused-sha1");

  step = "4. the fixed value saves";
  await setSignType("MD5");
  // Editing clears the error marks in the gutter.
  check((await page.locator('[data-testid^="gutter-error-"]').count()) === 0, "the gutter still marks an error after an edit");
  await page.getByTestId("validate-button").click();
  await page.waitForFunction(() => document.getElementById("status").textContent === "Valid.");
  check((await page.getByTestId("field-error").count()) === 0, "errors stay after a valid validate");
  await page.getByTestId("save-button").click();
  await page.waitForFunction(() => /^Saved /.test(document.getElementById("status").textContent));
  check((await status.getAttribute("class")) === "ok", "the save status is not shown as a success");
  check((await page.getByTestId("field-error").count()) === 0, "errors stay after a save");
  const saved = await editor.inputValue();
  check(/^\s*sign_type\s*=\s*"MD5"/m.test(saved), `after save the editor does not show MD5:\n${saved}`);
  check(/^\s*api_key\s*=\s*\{\s*set\s*=\s*true\s*\}/m.test(saved), `after save api_key is not { set = true }:\n${saved}`);
  const afterSave = await storedToml();
  check(afterSave.etag !== before.etag, "the save did not change the version");
  check(/^\s*sign_type\s*=\s*"MD5"/m.test(afterSave.text), `the stored sign_type is not MD5:\n${afterSave.text}`);
  check((await page.getByTestId("tenant-version").textContent()).includes(afterSave.etag), "the page does not show the new version");
  await assertNoSecrets();
  log(`saved, version ${afterSave.etag}`);
  await checkpoint("saved-md5");

  step = "6. switch alipay_app off";
  const toggle = page.getByTestId("toggle-alipay_app");
  check((await toggle.textContent()) === "Disable", `toggle-alipay_app says ${await toggle.textContent()}`);
  await toggle.click();
  await page.waitForFunction(() => document.getElementById("status").textContent === "alipay_app disabled.");
  check((await page.getByTestId("toggle-alipay_app").textContent()) === "Enable", "the toggle does not offer Enable");
  check((await page.getByTestId("provider-alipay_app").textContent()).includes("off"), "the provider badge does not say off");
  check(/\[providers\.alipay_app\][^[]*^\s*enabled\s*=\s*false/m.test(await editor.inputValue()), "the editor does not show alipay_app enabled = false");
  await assertNoSecrets();
  await checkpoint("alipay-off");

  step = "6b. switch alipay_app back on";
  await page.getByTestId("toggle-alipay_app").click();
  await page.waitForFunction(() => document.getElementById("status").textContent === "alipay_app enabled.");
  check((await page.getByTestId("toggle-alipay_app").textContent()) === "Disable", "the toggle does not offer Disable");
  check((await page.getByTestId("provider-alipay_app").textContent()).includes("on"), "the provider badge does not say on");
  await assertNoSecrets();
  await checkpoint("alipay-on");

  const platformId = process.env.PAYBRIDGE_PLATFORM_ID;
  if (platformId) {
    step = "7. open the platform";
    const platformButton = page.getByTestId(`platform-${platformId}`);
    await platformButton.waitFor({ state: "visible" });
    await platformButton.click();
    await page.waitForFunction(
      (id) => document.getElementById("editor").value.includes(`id = "${id}"`),
      platformId,
    );
    const platformText = await editor.inputValue();
    check(
      /^\s*private_key\s*=\s*\{\s*set\s*=\s*true\s*\}/m.test(platformText),
      `the platform's private_key is not shown masked:\n${platformText}`,
    );
    check(/^\[alipay_app\]/m.test(platformText), `the platform is not in the contract's shape:\n${platformText}`);
    check((await page.getByTestId("platform-users").textContent()).includes("Used by"), "the page does not say which tenants use the platform");
    check(await page.getByTestId("tenant-actions").isHidden(), "tenant actions are offered on a platform");
    const platformBefore = await adminGet(`/platforms/${encodeURIComponent(platformId)}`, "application/toml");
    await assertNoSecrets();

    step = "7b. rename the platform and save";
    const m = /^name = "([^"]*)"/m.exec(platformText);
    check(m, `no name line:\n${platformText}`);
    const start = m.index + m[0].length - m[1].length - 2; // the opening quote
    await editor.evaluate((el, [a, b]) => { el.focus(); el.setSelectionRange(a, b); }, [start, start + m[1].length + 2]);
    await page.keyboard.type('"Renamed in the browser"');
    await page.getByTestId("save-button").click();
    await page.waitForFunction(() => /^Saved /.test(document.getElementById("status").textContent));
    const platformAfter = await adminGet(`/platforms/${encodeURIComponent(platformId)}`, "application/toml");
    check(platformAfter.etag !== platformBefore.etag, "saving the platform did not change its version");
    check(/^name = "Renamed in the browser"/m.test(platformAfter.text), `the stored name is not the new one:\n${platformAfter.text}`);
    check(/^\s*private_key\s*=\s*\{\s*set\s*=\s*true\s*\}/m.test(await editor.inputValue()), "after save the private_key is not { set = true }");
    await assertNoSecrets();
    await checkpoint("platform-saved");
  }
  const orderNo = process.env.PAYBRIDGE_CONSOLE_ORDER;
  if (orderNo) {
    step = "8. search the order by its number";
    await page.getByTestId("tab-orders").click();
    await page.getByTestId("orders-view").waitFor({ state: "visible" });
    check(await page.getByTestId("main").isHidden(), "the config pane stays beside the orders");
    await page.getByTestId("search-q").fill(orderNo);
    await page.getByTestId("search-submit").click();
    const row = page.getByTestId(`order-row-${orderNo}`);
    await row.waitFor({ state: "visible" });
    check((await page.locator('#order-rows tr.link').count()) === 1, "the search by number found more than the order");
    check((await row.innerText()).includes("paid"), `the row does not say paid: ${await row.innerText()}`);
    check((await row.innerText()).includes("12.88"), `the row does not show 12.88 (1288 fen): ${await row.innerText()}`);

    step = "9. open its timeline";
    await row.click();
    await page.getByTestId("order-view").waitFor({ state: "visible" });
    await page.getByTestId("timeline-entry").first().waitFor({ state: "visible" });
    const kinds = await page.getByTestId("timeline-entry").evaluateAll((els) => els.map((e) => e.dataset.kind));
    for (const k of ["created", "provider_call", "notification", "transition", "webhook_attempt"]) {
      check(kinds.includes(k), `the timeline has no ${k}: ${kinds.join(", ")}`);
    }
    check(kinds[0] === "created", `the timeline does not start with the creation: ${kinds.join(", ")}`);
    const timelineText = await page.getByTestId("timeline").innerText();
    check(/pending → paid/.test(timelineText), `no pending → paid transition shown:\n${timelineText}`);
    await assertNoSecrets();

    step = "10. redeliver its webhook event";
    const redeliver = page.locator('[data-testid^="redeliver-"]').first();
    const eventId = (await redeliver.getAttribute("data-testid")).slice("redeliver-".length);
    await redeliver.click();
    await page.waitForFunction((id) => document.getElementById("status").textContent === `Event ${id} scheduled for delivery.`, eventId);
    check((await page.getByTestId(`delivery-${eventId}`).innerText()).startsWith("pending"), "the event is not pending again after the redeliver");
    await checkpoint("redelivered");

    step = "11. the dashboard draws its charts";
    await page.getByTestId("tab-dashboard").click();
    await page.getByTestId("chart-payments").waitFor({ state: "visible" });
    for (const id of ["payments", "amount", "tenants", "creates", "refused", "webhooks", "reconciler"]) {
      check((await page.getByTestId(`chart-${id}`).locator("svg").count()) === 1, `chart ${id} has no SVG`);
    }
    const bars = async (id) => page.getByTestId(`chart-${id}`).locator("svg rect").evaluateAll(
      (rects) => rects.filter((r) => Number(r.getAttribute("height")) > 0 && Number(r.getAttribute("width")) > 0).length,
    );
    for (const id of ["payments", "amount", "tenants", "creates", "webhooks"]) {
      check((await bars(id)) > 0, `chart ${id} draws no bar`);
    }
    check(/Create success rate: 100 %/.test(await page.getByTestId("dash-backlog").innerText()), `the create success rate is not 100 %: ${await page.getByTestId("dash-backlog").innerText()}`);
    const totals = await page.getByTestId("payment-totals").innerText();
    check(totals.includes(tenantId) && totals.includes("12.88"), `the payment totals do not show the order: ${totals}`);
    const dashboardPath = process.env.PAYBRIDGE_DASHBOARD_SCREENSHOT || join(tmpdir(), `paybridge-dashboard-${process.pid}.png`);
    await page.getByTestId("charts").screenshot({ path: dashboardPath });
    console.log(`@@dashboard ${dashboardPath}`);
    await assertNoSecrets();
    await checkpoint("dashboard");

    step = "12. the audit log shows the redelivery";
    await page.getByTestId("tab-audit").click();
    await page.getByTestId("audit-action").fill("redeliver_event");
    await page.getByTestId("audit-submit").click();
    // The unfiltered list (opened with the tab) also starts with the redelivery: wait for the
    // filtered one, and then no other action may be listed.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#audit-rows tr")];
      return rows.length > 0 && rows.every((r) => r.dataset.action === "redeliver_event");
    });
    check((await page.locator('[data-action="redeliver_event"]').first().innerText()).includes(`events.${eventId}`), "the audit entry does not name the event");
    await assertNoSecrets();
    await checkpoint("audited");

    const statementDay = process.env.PAYBRIDGE_STATEMENT_DAY;
    if (statementDay) {
      step = "13. the statements tab shows the reconciled day";
      await page.getByTestId("tab-statements").click();
      const statementRow = page.getByTestId(`statement-row-${tenantId}-wechat_miniprogram-${statementDay}`);
      await statementRow.waitFor({ state: "visible" });
      const rowText = await statementRow.innerText();
      check(/reconciled/.test(rowText) && rowText.includes("12.88"), `the statement row: ${rowText}`);
      await statementRow.click();
      await page.waitForFunction(() => /reconciled, version/.test(document.getElementById("statement-title").textContent));
      check(/every line matched/.test(await page.getByTestId("discrepancy-rows").innerText()), "the matched day lists differences");
      await assertNoSecrets();
    }
  }
  console.log("@@pass");
} catch (e) {
  exitCode = 1;
  console.error(`[admin.mjs] FAILED at ${e.message}`);
  try {
    console.error(`[admin.mjs] status: ${JSON.stringify(await status.textContent({ timeout: 1000 }))}`);
    const errors = await page.getByTestId("errors").innerText({ timeout: 1000 });
    if (errors) console.error(`[admin.mjs] errors shown: ${errors}`);
  } catch (_) {
    /* the page is gone */
  }
} finally {
  try {
    await page.screenshot({ path: screenshotPath, fullPage: true, timeout: 5000 });
    console.log(`@@screenshot ${screenshotPath}`);
  } catch (e) {
    console.error(`[admin.mjs] no screenshot: ${e.message}`);
  }
  await browser.close();
}
process.exit(exitCode);
