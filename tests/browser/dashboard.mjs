// The dashboard in headless Chromium: sign in with a token, watch a webhook arrive in the live
// feed, press retry on a refused shipment, see it booked and open its label; all of it with no
// request to another host and no Content-Security-Policy violation. Driven by the Rust test
// `app-http::it dashboard::*`, which starts the server and passes what it needs in the
// environment: BASE_URL, TOKEN, SECRET, ORDER_FILE, SHIPMENT_ID, CHROMIUM, SCREENSHOT.
import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { guard } from './guard.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL');
const shipment = env('SHIPMENT_ID');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext();
const problems = await guard(context, base);
const page = await context.newPage();
const step = (what) => console.log(`dashboard: ${what}`);
try {
  await page.goto(base + '/');
  step('a wrong token is refused');
  await page.fill('#token', 'lzn_not-a-token');
  await page.click('#login-form button');
  await page.waitForSelector('#notice:has-text("refused")', { timeout: 10000 });

  step('sign in');
  await page.fill('#token', env('TOKEN'));
  await page.click('#login-form button');
  await page.waitForSelector(`tr[data-shipment="${shipment}"]`, { timeout: 10000 });
  await page.waitForSelector('#live.on', { timeout: 10000 });
  const who = await page.textContent('#who');
  if (who !== 'admin') throw new Error(`signed in as ${who}`);

  step('a webhook arrives live');
  const body = readFileSync(env('ORDER_FILE'));
  const signature = createHmac('sha256', env('SECRET')).update(body).digest('base64');
  const posted = await fetch(base + '/api/deliveries/', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-wc-webhook-signature': signature,
      'x-wc-webhook-topic': 'order.created',
      'x-wc-webhook-resource': 'order',
      'x-wc-webhook-event': 'created',
      'x-wc-webhook-delivery-id': 'browser-1',
    },
    body,
  });
  if (posted.status !== 201) throw new Error(`the webhook was answered ${posted.status}`);
  const { webhook_id: webhookId } = await posted.json();
  await page.waitForSelector(`#feed li[data-kind="webhook_received"]:has-text("webhook ${webhookId}")`, { timeout: 15000 });
  await page.waitForSelector(`tr[data-webhook="${webhookId}"]`, { timeout: 15000 });

  step('press retry on the refused shipment');
  const row = `tr[data-shipment="${shipment}"]`;
  await page.waitForSelector(`${row} .s-ERROR_FROM_BODY`);
  await page.click(`${row} button[data-retry]`);
  await page.waitForSelector(`${row} .s-LABEL_SENT`, { timeout: 20000 });
  await page.waitForSelector(`#feed li[data-kind="shipment_booked"]`, { timeout: 15000 });
  const barcode = (await page.textContent(`${row} td:nth-child(5)`)).trim();
  if (!barcode || barcode === '-') throw new Error('the booked shipment shows no barcode');
  await page.waitForSelector(`${row} button[data-track]`);

  step('open its label');
  const [label] = await Promise.all([context.waitForEvent('page'), page.click(`${row} a[data-label]`)]);
  await label.waitForLoadState();
  if (!label.url().startsWith('blob:')) throw new Error(`the label opened at ${label.url()}`);

  if (problems.length) throw new Error(problems.join('\n'));
  step('ok');
} catch (error) {
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true }).catch(() => {});
  console.error(`dashboard: FAILED: ${error.message}`);
  console.error(await page.content().catch(() => ''));
  process.exitCode = 1;
} finally {
  await browser.close();
}
