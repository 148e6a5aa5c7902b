// The registry's pages in a real browser: Debian's chromium, driven by playwright-core (which
// never downloads a browser of its own). Started by ledger-api/tests/browser.rs against a service
// holding the reference case; prints one JSON object with every check, and exits non-zero if
// any failed.
//
//   node registry.test.js --url http://127.0.0.1:PORT --screenshots DIR [--chromium /usr/bin/chromium]
//                         [--hostile-participant ID]
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

function args() {
  const out = { chromium: "/usr/bin/chromium" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "").replace(/-/g, "_")] = argv[i + 1];
  if (!out.url || !out.screenshots) throw new Error("usage: --url URL --screenshots DIR");
  return out;
}

const checks = [];
function record(name, ok, detail) {
  checks.push({ name, ok: Boolean(ok), detail: detail === undefined ? "" : String(detail) });
}

async function verdict(page) {
  const section = page.locator("#verify");
  await page.waitForFunction(
    () => {
      const s = document.getElementById("verify");
      return s && s.dataset.verified !== "pending";
    },
    null,
    { timeout: 20000 }
  );
  return {
    verified: await section.getAttribute("data-verified"),
    failed: await section.getAttribute("data-failed"),
    status: (await page.locator("#verify-status").textContent()).trim(),
  };
}

function pdfPages(buffer) {
  const text = buffer.toString("latin1");
  const matches = text.match(/\/Type\s*\/Page(?![s\w])/g);
  return matches ? matches.length : 0;
}

async function main() {
  const a = args();
  fs.mkdirSync(a.screenshots, { recursive: true });
  const started = Date.now();
  const browser = await chromium.launch({
    executablePath: a.chromium,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    // launch() gives the browser a fresh, temporary profile of its own (--user-data-dir).
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "zh-CN" });
  const consoleErrors = [];
  const cspViolations = [];
  context.on("page", () => {});
  async function open(pathname) {
    const page = await context.newPage();
    page.on("console", (m) => {
      // An error page's own status is logged as a failed load; anything else is an error.
      const expected = /status of (404|400)/.test(m.text()) && /no-such-page|kind=gift/.test(pathname);
      if (m.type() === "error" && !expected) consoleErrors.push(`${pathname}: ${m.text()}`);
    });
    page.on("pageerror", (e) => consoleErrors.push(`${pathname}: ${e.message}`));
    await page.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (e) => {
        window.__csp = (window.__csp || []).concat(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    const response = await page.goto(a.url + pathname, { waitUntil: "load" });
    return { page, response };
  }
  async function shot(page, name) {
    await page.screenshot({ path: path.join(a.screenshots, `${name}.png`), fullPage: true });
  }
  async function cspOf(page, pathname) {
    const v = await page.evaluate(() => window.__csp || []);
    if (v.length) cspViolations.push(`${pathname}: ${v.join(", ")}`);
  }

  try {
    // The overview: the reference case's figures.
    {
      const { page, response } = await open("/");
      const body = await page.locator("body").innerText();
      record("overview answers 200", response.status() === 200, response.status());
      for (const figure of ["58.83", "588,300.00", "下渚湖", "检查点", "Latest checkpoint"]) {
        record(`overview shows ${figure}`, body.includes(figure), "");
      }
      record("overview draws the supply picture", (await page.locator("figure.supply svg rect").count()) > 1, "");
      record("overview draws the price chart", (await page.locator(".price-chart polyline").count()) >= 1, "");
      await cspOf(page, "/");
      await shot(page, "overview");
      await page.close();
    }
    // Every page kind: figures and a screenshot.
    const kinds = [
      ["projects", "/projects", ["下渚湖", "593.3", "8,900"]],
      ["project", "/projects/XZH", ["下渚湖", "17,000", "588,300.00", "888,300.00"]],
      ["batches", "/batches", ["XZH-2021", "17,000", "1,700"]],
      ["batch", "/batches/XZH-2021", ["10,000", "58.83", "588,300.00", "two-mountains-bank"]],
      ["trades", "/trades", ["收储", "10,000", "58.83", "588,300.00"]],
      ["trades-filtered", "/trades?kind=acquisition", ["10,000", "588,300.00"]],
      ["certificates", "/certificates", ["CERT-2022-0001", "1,000"]],
      ["pledges", "/pledges", ["PL-2022-001", "164,724.00", "1.4286"]],
      ["prices", "/prices", ["58.83", "BM-2022-06"]],
      ["participants", "/participants", ["下渚湖湿地管理委员会", "两山银行"]],
      ["participant", "/participants/two-mountains-bank", ["10,000", "588,300.00"]],
      ["entries", "/entries", ["T-2022-0001"]],
      ["holdings", "/holdings?batch=XZH-2021", ["two-mountains-bank", "1,000", "4,000"]],
      ["reports", "/reports", ["XZH-MR-2021", "17,000"]],
      ["proceeds", "/proceeds", ["下渚湖", "588,300.00", "888,300.00"]],
    ];
    for (const [name, pathname, figures] of kinds) {
      const { page, response } = await open(pathname);
      const body = await page.locator("body").innerText();
      record(`${pathname} answers 200`, response.status() === 200, response.status());
      const missing = figures.filter((f) => !body.includes(f));
      record(`${pathname} shows ${figures.join(", ")}`, missing.length === 0, missing.join(", "));
      await cspOf(page, pathname);
      await shot(page, name);
      await page.close();
    }

    // The certificate: its figures, the check turns green, and it prints on one A4 page.
    {
      const { page } = await open("/certificates/CERT-2022-0001");
      const result = await verdict(page);
      record("certificate check turns green", result.verified === "true", JSON.stringify(result));
      const cosignatures = (await page.locator('#verify-steps li[data-step="cosignatures"]').textContent()) || "";
      record(
        "the witness's cosignature is checked",
        cosignatures.includes("cosigned by 1 of 1 witnesses") && result.status.includes("1 of 1 witnesses cosigned"),
        cosignatures
      );
      const body = await page.locator("body").innerText();
      for (const f of ["CERT-2022-0001", "1,000", "XZH-2021", "2021", "下渚湖", "Enterprise A"]) {
        record(`certificate shows ${f}`, body.includes(f), "");
      }
      const printed = (await page.locator("#key-fingerprint-checked").textContent()).trim();
      const shown = (await page.locator("#key-fingerprint-page").textContent()).trim();
      record("the browser checked with the key the page shows", printed === shown && printed.length > 0, `${printed} / ${shown}`);
      await cspOf(page, "/certificates/CERT-2022-0001");
      await shot(page, "certificate");
      await page.emulateMedia({ media: "print" });
      await shot(page, "certificate-print");
      const pdf = await page.pdf({ format: "A4", printBackground: true });
      fs.writeFileSync(path.join(a.screenshots, "certificate.pdf"), pdf);
      const pages = pdfPages(pdf);
      record("the certificate prints on one A4 page", pages === 1, `${pages} pages`);
      await page.close();
    }
    // The pledge and an entry: green too.
    for (const [name, pathname] of [
      ["pledge", "/pledges/PL-2022-001"],
      ["entry", "/entries/13"],
    ]) {
      const { page } = await open(pathname);
      const result = await verdict(page);
      record(`${pathname} check turns green`, result.verified === "true", JSON.stringify(result));
      await cspOf(page, pathname);
      await shot(page, name);
      await page.close();
    }

    // Tampering: what the browser receives is altered on its way (nothing in the service).
    const tamper = [
      [
        "an altered inclusion proof",
        "**/v1/proofs/inclusion*",
        (body) => {
          const p = JSON.parse(body);
          p.proof[0] = p.proof[0].replace(/^./, (c) => (c === "0" ? "1" : "0"));
          return JSON.stringify(p);
        },
        "inclusion",
      ],
      [
        "an altered checkpoint root",
        "**/v1/checkpoint",
        (body) => {
          const lines = body.split("\n");
          const root = Buffer.from(lines[2], "base64");
          root[0] ^= 1;
          lines[2] = root.toString("base64");
          return lines.join("\n");
        },
        "checkpoint-signature",
      ],
      [
        "an altered checkpoint size",
        "**/v1/checkpoint",
        (body) => {
          const lines = body.split("\n");
          lines[1] = String(Number(lines[1]) + 1);
          return lines.join("\n");
        },
        "checkpoint-signature",
      ],
      [
        "an altered cosignature",
        "**/v1/checkpoint",
        (body) => {
          // The last signature line is the witness's (the operator's comes first).
          const lines = body.replace(/\n$/, "").split("\n");
          const last = lines[lines.length - 1].split(" ");
          const signature = Buffer.from(last[last.length - 1], "base64");
          signature[signature.length - 1] ^= 1;
          last[last.length - 1] = signature.toString("base64");
          lines[lines.length - 1] = last.join(" ");
          return lines.join("\n") + "\n";
        },
        "cosignature",
      ],
      [
        "an altered entry",
        "**/v1/entries/*",
        (body) => body.replace('"quantity":"1000"', '"quantity":"1001"'),
        null,
      ],
    ];
    for (const [what, pattern, alter, expected] of tamper) {
      const page = await context.newPage();
      await page.route(pattern, async (route) => {
        const response = await route.fetch();
        const body = alter(await response.text());
        await route.fulfill({ response, body });
      });
      await page.goto(a.url + "/certificates/CERT-2022-0001", { waitUntil: "load" });
      const result = await verdict(page);
      const ok = result.verified === "false" && (expected === null || result.failed === expected);
      record(`the check turns red on ${what}`, ok, JSON.stringify(result));
      if (what === "an altered inclusion proof") await shot(page, "certificate-tampered");
      await page.close();
    }

    // A checkpoint the witness has not cosigned (yet): still the operator's, and said so.
    {
      const page = await context.newPage();
      await page.route("**/v1/checkpoint", async (route) => {
        const response = await route.fetch();
        const lines = (await response.text()).replace(/\n$/, "").split("\n");
        await route.fulfill({ response, body: lines.slice(0, -1).join("\n") + "\n" });
      });
      await page.goto(a.url + "/certificates/CERT-2022-0001", { waitUntil: "load" });
      const result = await verdict(page);
      const cosignatures = (await page.locator('#verify-steps li[data-step="cosignatures"]').textContent()) || "";
      record(
        "a checkpoint not cosigned yet is verified and says so",
        result.verified === "true" && cosignatures.includes("cosigned by 0 of 1") && cosignatures.includes("not yet cosigned by"),
        cosignatures
      );
      await page.close();
    }

    // A hostile participant name renders as text.
    if (a.hostile_participant) {
      const { page } = await open(`/participants/${a.hostile_participant}`);
      const injected = await page.evaluate(() => window.__pwned === true);
      const heading = (await page.locator("h1.participant-name").textContent()) || "";
      record("a hostile name runs no script", !injected, "");
      record("a hostile name shows as text", heading.includes("<script>"), heading);
      record("a hostile name adds no element", (await page.locator("main script, main img").count()) === 0, "");
      await shot(page, "hostile-participant");
      await page.close();
      const list = await open("/participants");
      record("a hostile name runs no script in the list", !(await list.page.evaluate(() => window.__pwned === true)), "");
      await list.page.close();
    }

    // Errors: the 404 page and a 400 page for a query that is not valid.
    {
      const { page, response } = await open("/no-such-page");
      record("an unknown page is a 404 page", response.status() === 404 && (await page.locator("h1").textContent()).includes("404"), response.status());
      await shot(page, "not-found");
      await page.close();
      const bad = await open("/trades?kind=gift");
      record("a query that is not valid is a 400 page", bad.response.status() === 400 && (await bad.page.locator(".detail").textContent()).includes("kind"), bad.response.status());
      await shot(bad.page, "bad-request");
      await bad.page.close();
    }
    record("no script error on any page", consoleErrors.length === 0, consoleErrors.join(" | "));
    record("no Content-Security-Policy violation", cspViolations.length === 0, cspViolations.join(" | "));
  } finally {
    await browser.close();
  }
  const failed = checks.filter((c) => !c.ok);
  process.stdout.write(
    JSON.stringify({ passed: checks.length - failed.length, failed: failed.length, seconds: (Date.now() - started) / 1000, checks }) + "\n"
  );
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ passed: 0, failed: 1, error: String(e && e.stack ? e.stack : e), checks }) + "\n");
  process.exit(2);
});
