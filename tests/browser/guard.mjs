// What a page of the connector must never do, watched in a browser context: load anything
// from another host (such requests are aborted and recorded, as if offline) or trigger a
// Content-Security-Policy violation (each is recorded from the page's
// `securitypolicyviolation` events and the console).
export async function guard(context, base) {
  const origin = new URL(base).origin;
  const problems = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + '/') || url.startsWith('blob:') || url.startsWith('data:')) {
      return route.continue();
    }
    problems.push(`request to another host: ${url}`);
    return route.abort();
  });
  await context.exposeBinding('__reportViolation', (_, text) => problems.push(`CSP violation: ${text}`));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  context.on('console', (message) => {
    if (/Content[- ]Security[- ]Policy/i.test(message.text())) problems.push(`console: ${message.text()}`);
  });
  return problems;
}
