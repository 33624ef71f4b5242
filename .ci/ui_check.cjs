// Drives the controller page of the running demo in headless Chromium:
// sees the tracked tables, clicks a table's enable toggle and another's
// Force Load button, and checks the Redis keys change. Saves a screenshot.
//
// The demo runs with an API token: the page asks for it (a browser
// prompt) at the first change, and the check gives it. A wrong token's
// refusal stays on the page, over its refreshes, until dismissed.
//
// States in words: a paused table's requested load is queued, not
// spinning; lag in versions behind; a table never synced says so; while
// Redis does not answer, the page says so and every row's state is unknown.
//
// At 1,400, 1,024, 800 and 390 px, with a table of a long name without
// break points (and markup in it, shown as text): every text and control of
// the table stays in its cell and overlaps nothing, the headers fit, and the
// page is no wider than the screen. A screenshot at each width.
//
// Then at a phone's 390 px the toggle and Force Load are on screen and work.
//
// With --read-only (a demo without a token): the controls are disabled and
// say why in the API's words, and a write from the page changes nothing.
//
// usage: node ui_check.cjs BASE_URL REDIS_PORT SCREENSHOT_PATH API_TOKEN
//        node ui_check.cjs --read-only BASE_URL REDIS_PORT SCREENSHOT_PATH
"use strict";
const { chromium } = require("playwright-core");
const { execFileSync } = require("child_process");

const readOnly = process.argv[2] === "--read-only";
const [base, redisPort, shot, token] = process.argv.slice(readOnly ? 3 : 2);
const get = (key) =>
  execFileSync("redis-cli", ["-p", redisPort, "GET", key], { encoding: "utf8" }).trim();

// The demo's table whose name is long, without break points, with markup
// and a right-to-left override; the page shows the override as a mark.
const LONG = "LoyaltyProgrammeMembershipTierHistoryArchive2019Through2024\u202E<b>";
const LONG_SHOWN = "LoyaltyProgrammeMembershipTierHistoryArchive2019Through2024⟨U+202E⟩<b>";
const WIDTHS = [1400, 1024, 800, 390];

// Run in the page: what is wrong with the table's layout, in words. What
// the eye sees is measured: each text's line boxes, each control's box.
function layoutProblems() {
  const out = [];
  const screen = window.innerWidth;
  const wider = document.documentElement.scrollWidth - screen;
  if (wider > 0) out.push(`the page is ${wider} px wider than the screen`);
  const boxes = (el) => {
    if (el.matches("button, .bar")) return [el.getBoundingClientRect()];
    const range = document.createRange();
    range.selectNodeContents(el);
    return [...range.getClientRects()].filter((b) => b.width > 0 && b.height > 0);
  };
  const inside = (b, c) => b.left >= c.left - 1 && b.right <= c.right + 1 && b.top >= c.top - 1 && b.bottom <= c.bottom + 1;
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const what = (el) => `${el.className || el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 24)}"`;
  // Each item inside its cell and on screen; no two items overlapping.
  const check = (where, cells, items) => {
    const seen = [];
    for (const cell of cells) {
      // The cell's content box: its padding is no room for content.
      const r = cell.getBoundingClientRect();
      const pad = getComputedStyle(cell);
      const c = { left: r.left + parseFloat(pad.paddingLeft), right: r.right - parseFloat(pad.paddingRight),
        top: r.top + parseFloat(pad.paddingTop), bottom: r.bottom - parseFloat(pad.paddingBottom) };
      for (const el of items(cell)) {
        for (const b of boxes(el)) {
          if (!inside(b, c)) out.push(`${where}: ${what(el)} leaves its cell`);
          if (b.left < -1 || b.right > screen + 1) out.push(`${where}: ${what(el)} is off-screen`);
          for (const [other, o] of seen) {
            if (other !== el && overlap(b, o)) out.push(`${where}: ${what(el)} overlaps ${what(other)}`);
          }
          seen.push([el, b]);
        }
      }
    }
  };
  const head = document.querySelector("table.tables thead");
  if (getComputedStyle(head).display !== "none") check("header", [...head.querySelectorAll("th")], (th) => [th]);
  const items = ".name, .key, .version, .switch, .bar-label > span, .bar, .state, .err, .note, .force";
  for (const tr of document.querySelectorAll("tr[data-table]")) {
    check(tr.dataset.table, [...tr.cells], (td) => td.querySelectorAll(items));
    // A name is readable: a dozen characters to a line at least.
    const name = tr.querySelector(".name");
    if (name.getBoundingClientRect().width < 100) out.push(`${tr.dataset.table}: the name is ${name.getBoundingClientRect().width} px wide`);
    // "Loading" and its count apart, when on one line.
    const [state, count] = [...tr.querySelectorAll(".bar-label > span")].map((s) => s.getBoundingClientRect());
    if (count && count.width > 0 && Math.abs(state.top - count.top) < 2 && count.left - state.right < 4) {
      out.push(`${tr.dataset.table}: "${tr.querySelector(".bar-label").textContent}" has no space between its parts`);
    }
  }
  return out;
}

// Resolves after the page rendered its rows twice more (each refresh
// replaces the rows; a marked one is gone).
async function refreshed(page) {
  for (let i = 0; i < 2; i += 1) {
    await page.evaluate(() => { document.querySelector("tr[data-table]").dataset.seen = "1"; });
    await page.waitForFunction(() => !document.querySelector("tr[data-seen]"), null, { timeout: 10000 });
  }
}

async function until(what, check, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// A demo without a token: every control disabled, saying why; a write
// sent from the page anyway is refused and changes nothing.
async function readOnlyCheck(browser, ok) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  page.on("dialog", (d) => { throw new Error(`a read-only page asked: ${d.message()}`); });
  await page.goto(base + "/");
  await page.waitForSelector('tr[data-table="Product"]', { timeout: 15000 });
  await page.waitForSelector("#writes-off:not([hidden])", { timeout: 15000 });
  const banner = await page.textContent("#writes-off");
  for (const words of ["no API token is set", "CTSYNC_API_TOKEN", "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true"]) {
    if (!banner.includes(words)) throw new Error(`the read-only notice lacks "${words}": ${banner}`);
  }
  for (const action of ["toggle", "force_full_load"]) {
    const button = page.locator(`button[data-action="${action}"][data-table="Product"]`);
    if (!(await button.isDisabled())) throw new Error(`${action} of Product is not disabled`);
    const title = await button.getAttribute("title");
    if (!banner.includes(title)) throw new Error(`${action}'s title is not the notice's words: ${title}`);
  }
  ok("read-only: controls disabled, saying why in the API's words");
  const before = get("mssql_sync:enabled:Product");
  const status = await page.evaluate(async () => (await fetch("/api/tables/Product", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action: "enable" }),
  })).status);
  if (status !== 403) throw new Error(`a write from the read-only page got ${status}`);
  if (get("mssql_sync:enabled:Product") !== before) throw new Error("a read-only write changed a flag");
  ok("read-only: a write from the page gets 403 and changes nothing");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
  let passed = 0;
  const ok = (what) => { passed += 1; console.log(`ok   ${what}`); };
  let prompts = 0;
  // A page whose token prompt is answered with the demo's token (or `answer`).
  const open = async (viewport, answer = token) => {
    const p = await browser.newPage({ viewport });
    p.on("dialog", (d) => {
      prompts += 1;
      if (!d.message().includes("CTSYNC_API_TOKEN")) throw new Error(`unexpected dialog: ${d.message()}`);
      d.accept(answer);
    });
    return p;
  };
  try {
    if (readOnly) {
      await readOnlyCheck(browser, ok);
      return;
    }
    // A wrong token: the refusal stays on the page over the refreshes
    // until dismissed, and nothing changes.
    const refused = await open({ width: 1400, height: 800 }, "not-the-token");
    await refused.goto(base + "/");
    await refused.waitForSelector('tr[data-table="Product"]', { timeout: 15000 });
    await refused.click('button[data-action="toggle"][data-table="Product"]');
    const refusal = "the API token was not accepted";
    await refused.waitForFunction((t) => document.body.innerText.includes(t), refusal, { timeout: 5000 })
      .catch(() => { throw new Error("a refused write showed no message"); });
    await refreshed(refused);
    if (!(await refused.evaluate((t) => document.body.innerText.includes(t), refusal))) {
      throw new Error("the refused write's message was erased by the page's refreshes");
    }
    const said = await refused.textContent("#action-error");
    if (!said.includes("Product") || !said.includes("not accepted")) throw new Error(`the refusal does not say what failed: ${said}`);
    if (get("mssql_sync:enabled:Product") !== "false") throw new Error("a wrong token changed a flag");
    await refused.click("#action-error-close");
    if (await refused.evaluate((t) => document.body.innerText.includes(t), refusal)) throw new Error("the refusal cannot be dismissed");
    await refused.close();
    prompts = 0;
    ok("a wrong token's refusal stays over two refreshes, saying what failed, until dismissed; nothing changed");

    const page = await open({ width: 1400, height: 800 });
    await page.goto(base + "/");
    for (const t of ["Customer", "User", "Product", "sales.Order"]) {
      await page.waitForSelector(`tr[data-table="${t}"]`, { timeout: 15000 });
    }
    ok("page lists the tracked tables");
    if ((await page.textContent("#primary")).includes("@")) throw new Error("credentials shown");

    if (get("mssql_sync:enabled:Product") !== "false") throw new Error("Product should start paused");
    await page.click('button[data-action="toggle"][data-table="Product"]');
    await until("mssql_sync:enabled:Product = true", () => get("mssql_sync:enabled:Product") === "true");
    if (prompts !== 1) throw new Error(`the page asked for the token ${prompts} times`);
    ok("the page asked for the API token once; the enable toggle set mssql_sync:enabled:Product to \"true\"");
    await page.waitForSelector('tr[data-table="Product"] .bar.loading', { timeout: 15000 });
    ok("progress bar shows the running full load");

    // Force Load of a paused table (the README's order: force, then
    // enable): queued until enabled, not a spinning "Loading…".
    const longForce = `button[data-action="force_full_load"][data-table="${LONG}"]`;
    await page.click(longForce);
    await until(`mssql_sync:force_full_load:${LONG} = true`, () => get(`mssql_sync:force_full_load:${LONG}`) === "true");
    await refreshed(page);
    const queued = await page.evaluate((sel) => {
      const b = document.querySelector(sel);
      return { spins: !!b.querySelector(".spin"), says: b.textContent,
        state: b.closest("tr").querySelector(".state").textContent };
    }, longForce);
    if (queued.spins || queued.says.includes("Loading") || !queued.says.includes("queued") || !queued.state.startsWith("paused")
        || !queued.state.includes("queued")) {
      throw new Error(`a paused table with a Force Load requested shows: ${JSON.stringify(queued)}`);
    }
    ok("a paused table's requested Force Load shows as queued (not a spinning Loading…) while it stays paused");

    // The layout at each width, while Product loads (its label is longest).
    const wrong = [];
    for (const width of WIDTHS) {
      const p = await open({ width, height: 900 });
      await p.goto(base + "/");
      await p.waitForSelector(`tr[data-table="${LONG}"]`, { timeout: 15000 });
      await p.waitForSelector('tr[data-table="Product"] .bar.loading', { timeout: 15000 });
      const shown = await p.textContent(`tr[data-table="${LONG}"] .name`);
      if (shown !== LONG_SHOWN || (await p.$("table.tables b"))) throw new Error(`the long name is not shown as text, its override as a mark: ${shown}`);
      const widthShot = shot.replace(/\.png$/, `-${width}px.png`);
      await p.screenshot({ path: widthShot, fullPage: true });
      console.log(`screenshot: ${widthShot}`);
      const problems = await p.evaluate(layoutProblems);
      if (problems.length) wrong.push(`layout at ${width} px:\n  ${[...new Set(problems)].join("\n  ")}`);
      await p.close();
    }
    if (wrong.length) throw new Error(wrong.join("\n"));
    ok(`at ${WIDTHS.join(", ")} px every text and control stays in its cell, overlapping nothing; the page fits the screen`);

    const startedAt = () => JSON.parse(get("mssql_sync:progress:Customer") || "{}").startedAt || 0;
    const before = startedAt();
    await page.click('button[data-action="force_full_load"][data-table="Customer"]');
    // ctsync resets the flag itself once the new load finished.
    await until("a new full load of Customer finished", () =>
      startedAt() > before && get("mssql_sync:force_full_load:Customer") === "false");
    ok("Force Load button triggered a full load that reset mssql_sync:force_full_load:Customer");

    await page.waitForFunction(() => document.getElementById("live-text").textContent === "Live Sync Active");
    ok("live status dot is green");

    // States in words: versions behind, not "lag 0 v"; a table never
    // synced says so, not an unexplained count of seconds.
    const stateOf = (t) => page.textContent(`tr[data-table="${t}"] .state`);
    await until("Customer incremental", async () => (await stateOf("Customer")).startsWith("incremental"));
    const customer = await stateOf("Customer");
    if (!/\b\d[\d,]* versions? behind\b/.test(customer) || /\d v\b/.test(customer)) throw new Error(`Customer's state: ${customer}`);
    await until("Legacy in error", async () => (await stateOf("Legacy")).startsWith("error"));
    await refreshed(page);
    const legacy = await stateOf("Legacy");
    if (!legacy.includes("never synced") || /\d s\b/.test(legacy)) throw new Error(`Legacy's state (never synced): ${legacy}`);
    ok(`states say what they mean: "${customer}", "${legacy}"`);

    // A tab without a token: error text and host names hidden, saying so;
    // "Enter a token" shows them.
    const anon = await open({ width: 1400, height: 800 });
    await anon.goto(base + "/");
    await anon.waitForSelector('tr[data-table="Legacy"]', { timeout: 15000 });
    await anon.waitForSelector("#details-hidden:not([hidden])", { timeout: 5000 })
      .catch(() => { throw new Error("a tab without a token does not say that details are hidden"); });
    const anonLegacy = await anon.textContent('tr[data-table="Legacy"]');
    const anonPrimary = await anon.textContent("#primary");
    if (await anon.$('tr[data-table="Legacy"] .err')) throw new Error(`an error message shown without a token: ${anonLegacy}`);
    if (!anonPrimary.includes("hidden")) throw new Error(`the primary's host shown without a token: ${anonPrimary}`);
    prompts = 0;
    await anon.click("#sign-in");
    await anon.waitForSelector('tr[data-table="Legacy"] .err', { timeout: 5000 })
      .catch(() => { throw new Error("a token entered on the page did not show Legacy's error"); });
    if (prompts !== 1 || !(await anon.$eval("#details-hidden", (n) => n.hidden))) throw new Error("the token prompt or the notice is wrong");
    ok(`without a token the page hides error text and host names ("${anonPrimary}") and says so; "Enter a token" shows them`);
    await anon.close();

    // Clickjacking: a page of another origin frames the controller under a
    // transparent layer and clicks where the toggle is; the browser must
    // refuse to render it in a frame (X-Frame-Options, frame-ancestors).
    const evil = await browser.newPage({ viewport: { width: 1500, height: 800 } });
    await evil.setContent(`<iframe id="f" src="${base}/" style="opacity:0.01;position:absolute;top:0;left:0;width:1500px;height:800px;border:0"></iframe>`);
    await evil.waitForTimeout(2000);
    const frame = evil.frames().find((f) => f !== evil.mainFrame());
    const framedRows = frame ? await frame.$$("tr[data-table]").catch(() => []) : [];
    if (framedRows.length > 0) throw new Error("the controller page rendered inside a foreign frame");
    const userBefore = get("mssql_sync:enabled:User");
    await evil.mouse.click(1000, 150);
    await evil.waitForTimeout(1000);
    if (get("mssql_sync:enabled:User") !== userBefore) throw new Error("a framed click changed a flag");
    ok("a framed page cannot show or act on the controller");
    await evil.close();
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    // Redis stops answering for 12 s: the page says it cannot read the
    // tables' state and naming Redis, every row says its state is unknown;
    // once Redis answers again, the notice goes and the rows are current.
    execFileSync("redis-cli", ["-p", redisPort, "CLIENT", "PAUSE", "12000", "ALL"]);
    const outage = await page.waitForFunction(() => {
      const n = document.getElementById("notice");
      const states = [...document.querySelectorAll("tr[data-table] .state")];
      return !n.hidden && n.textContent.toLowerCase().includes("redis") && states.length > 0
        && states.every((s) => s.textContent.startsWith("unknown")) && n.textContent;
    }, null, { timeout: 11000 }).then((h) => h.jsonValue()).catch(async () => {
      throw new Error(`Redis not answering, the page shows: notice "${await page.textContent("#notice")}", `
        + `Customer "${await stateOf("Customer")}"`);
    });
    await page.waitForFunction(() => document.getElementById("notice").hidden
      && !document.querySelector("#rows .state.unknown"), null, { timeout: 30000 });
    ok(`while Redis did not answer the page said "${outage}" and every row "unknown"; then recovered`);

    // A phone: 390 px wide.
    const phone = await open({ width: 390, height: 844 });
    await phone.goto(base + "/");
    await phone.waitForSelector('tr[data-table="sales.Order"]', { timeout: 15000 });
    const onScreen = async (selector) => {
      const box = await phone.locator(selector).boundingBox();
      if (!box || box.x < 0 || box.x + box.width > 390) throw new Error(`${selector} is off-screen: ${JSON.stringify(box)}`);
    };
    const toggle = 'button[data-action="toggle"][data-table="sales.Order"]';
    const forceUser = 'button[data-action="force_full_load"][data-table="User"]';
    await onScreen(toggle);
    await onScreen(forceUser);
    if (get("mssql_sync:enabled:sales.Order") !== "false") throw new Error("sales.Order should start paused");
    await phone.click(toggle);
    await until("mssql_sync:enabled:sales.Order = true", () => get("mssql_sync:enabled:sales.Order") === "true");
    const requests = () => Number(get("mssql_sync:force_requests:User") || "0");
    const requestsBefore = requests();
    await phone.click(forceUser);
    await until("a Force Load request for User", () => requests() > requestsBefore);
    ok("toggle and Force Load are on screen and work at 390 px");
  } finally {
    await browser.close();
  }
  console.log(`ui: ${passed} passed, 0 failed`);
})().catch((e) => {
  console.error(`ui check failed: ${e.stack || e}`);
  console.log("ui: 0 passed, 1 failed");
  process.exit(1);
});
