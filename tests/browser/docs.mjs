// The API documentation (/docs) in headless Chromium: Swagger UI, served by the connector
// itself, renders every operation of the OpenAPI document with no request to another host and
// no Content-Security-Policy violation. Driven by the Rust test `app-http::it dashboard::*`,
// which passes BASE_URL, CHROMIUM, OPERATIONS (how many operations the document has) and
// SCREENSHOT.
import { chromium } from 'playwright-core';
import { guard } from './guard.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext();
const problems = await guard(context, base);
const page = await context.newPage();
const step = (what) => console.log(`docs: ${what}`);
try {
  step('Swagger UI renders the document');
  await page.goto(base + '/docs');
  await page.waitForSelector('.swagger-ui .info .title', { timeout: 15000 });
  const title = await page.textContent('.swagger-ui .info .title');
  if (!title.includes('La Zona connector operations API')) throw new Error(`title ${title}`);
  await page.waitForSelector('.opblock', { timeout: 15000 });
  const operations = await page.locator('.opblock').count();
  if (operations !== Number(env('OPERATIONS'))) {
    throw new Error(`${operations} operations shown, ${env('OPERATIONS')} in the document`);
  }

  step('an operation opens, with its parameters');
  await page.click('#operations-webhooks-list_webhooks .opblock-summary');
  await page.waitForSelector('#operations-webhooks-list_webhooks tr[data-param-name="limit"]', { timeout: 10000 });

  if (problems.length) throw new Error(problems.join('\n'));
  step('ok');
} catch (error) {
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true }).catch(() => {});
  console.error(`docs: FAILED: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
