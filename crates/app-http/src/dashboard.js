// The dashboard's script (dashboard.html; served from the binary at /assets/dashboard.js).
"use strict";
const api = "/api/v1";
let token = sessionStorage.getItem("lazona-token");
let admin = false;
let stream = null;

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

async function call(path, options = {}) {
  const response = await fetch(api + path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token },
  });
  if (response.status === 401) { signOut("The token was refused."); throw new Error("unauthorised"); }
  return response;
}

async function json(path) {
  const response = await call(path);
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function statusCell(status) {
  return `<span class="status s-${esc(status)}">${esc(status)}</span>`;
}

async function loadShipments() {
  const page = await json("/shipments?limit=50");
  $("shipments").innerHTML = page.items.map((s) => `
    <tr data-shipment="${s.id}">
      <td><a href="#" data-mail="${s.id}" title="its label mail and the operators' actions">${s.id}</a></td><td>${s.order_id}</td><td>${s.vendor_id}</td>
      <td>${statusCell(s.status)}</td><td>${esc(s.barcode || "-")}</td>
      <td>${s.has_label ? `<a href="#" data-label="${s.id}">PDF</a>` : ""}</td>
      <td>${s.mail_state ? `<a href="#" data-mail="${s.id}" title="the label mail's history">${statusCell(s.mail_state)}</a>` : ""}</td>
      <td class="msg">${esc(s.message)}</td>
      <td>${admin && s.method === "KOIKI" ? `<button type="button" data-retry="${s.id}" data-status="${esc(s.status)}"${s.status === "BOOKING" ? " disabled" : ""}>Retry</button>
          ${s.barcode ? `<button type="button" data-track="${s.id}">Refresh</button>` : ""}` : ""}</td>
    </tr>`).join("");
  for (const id of mailOpen) showMail(id).catch(() => {});
}

// Who did what to a shipment or a webhook (admin only): the operators' actions, newest first.
function actionsList(actions) {
  if (!actions) return "";
  const items = actions.map((a) => `<li>${esc(new Date(a.at).toLocaleString())} <span class="kind">${esc(a.action)}</span>${a.forced ? " (forced)" : ""}
      by <strong>${esc(a.actor)}</strong> ${esc(a.detail || "")}</li>`).join("");
  return `<div class="actions">Operator actions<ul>${items || "<li>none</li>"}</ul></div>`;
}

// A shipment's label mail: its state and what the mail relay reported, and the operators'
// actions on it, in a row below it (kept open across reloads until clicked again).
const mailOpen = new Set();
async function toggleMail(id) {
  const open = document.querySelector(`tr[data-mail-detail="${id}"]`);
  if (open) { open.remove(); mailOpen.delete(id); return; }
  mailOpen.add(id);
  await showMail(id);
}

async function showMail(id) {
  const row = document.querySelector(`tr[data-shipment="${id}"]`);
  const s = await json(`/shipments/${id}`);
  const events = (s.mail_events || []).map((e) => `<li>${esc(new Date(e.occurred_at || e.received_at).toLocaleString())}
      ${statusCell(e.state || e.event)} ${esc(e.event)} ${esc(e.email || "")} ${esc(e.detail || "")}${e.status === "applied" ? "" : ` (${esc(e.status)})`}</li>`).join("");
  const detail = document.createElement("tr");
  detail.className = "mail-detail";
  detail.dataset.mailDetail = id;
  detail.innerHTML = `<td colspan="9">${s.mail_state ? `Label mail ${statusCell(s.mail_state)}
      ${s.mail_state_at ? "since " + esc(new Date(s.mail_state_at).toLocaleString()) : ""}
      ${s.mailed_at ? "· mailed " + esc(new Date(s.mailed_at).toLocaleString()) : ""}
      ${s.mail_state === "bounced" || s.mail_state === "rejected" || s.mail_state === "spam" ? `· the vendor has no label: <code>lazona labels resend ${s.id}</code>` : ""}
      <ul>${events || "<li>no report from the mail relay yet</li>"}</ul>` : "No label mail."}
      ${actionsList(s.actions)}</td>`;
  if (row) row.after(detail);
}

async function loadWebhooks() {
  if (!admin) return;
  const page = await json("/webhooks?limit=50");
  $("webhooks").innerHTML = page.items.map((w) => `
    <tr data-webhook="${w.id}">
      <td><a href="#" data-webhook-detail="${w.id}" title="its history and the operators' actions">${w.id}</a></td><td>${esc(w.topic || w.resource)}</td><td>${esc(w.subject_id ?? "-")}</td>
      <td>${statusCell(w.status)}</td><td>${esc(new Date(w.received_at).toLocaleString())}</td>
      <td class="msg">${esc(w.error)}</td>
    </tr>`).join("");
}

// A webhook's processing history and the operators' actions on it, in a row below it.
async function toggleWebhook(id) {
  const open = document.querySelector(`tr[data-webhook-of="${id}"]`);
  if (open) { open.remove(); return; }
  const w = await json(`/webhooks/${id}`);
  const history = w.history.map((h) => `<li>${esc(new Date(h.at).toLocaleString())} ${statusCell(h.status)} ${esc(h.detail || "")}</li>`).join("");
  const detail = document.createElement("tr");
  detail.className = "webhook-detail";
  detail.dataset.webhookOf = id;
  detail.innerHTML = `<td colspan="6">History<ul>${history}</ul>${actionsList(w.actions)}</td>`;
  document.querySelector(`tr[data-webhook="${id}"]`)?.after(detail);
}

// The banner: the open alerts (admin only), the most recent first, each resolvable by hand.
async function loadAlerts() {
  if (!admin) return;
  const list = await json("/alerts?state=open&limit=5");
  $("alerts-banner").classList.toggle("hidden", list.open_total === 0);
  const kinds = Object.entries(list.open_by_kind).map(([k, n]) => `${n} ${k}`).join(", ");
  $("alerts-count").textContent = `${list.open_total} open alert${list.open_total === 1 ? "" : "s"} (${kinds})`;
  $("alerts-list").innerHTML = list.items.map((a) => `
    <li data-alert="${a.id}"><span class="kind">${esc(a.kind)}</span>${esc(a.summary)}
      ${a.count > 1 ? `<span class="count">×${a.count}</span>` : ""}
      <button type="button" data-resolve="${a.id}">Resolve</button></li>`).join("");
}

function showEvent(event) {
  const li = document.createElement("li");
  li.dataset.kind = event.kind;
  const ids = ["webhook_id", "shipment_id", "order_id", "vendor_id", "job_id"]
    .filter((k) => event[k] != null).map((k) => `${k.replace("_id", "")} ${event[k]}`).join(", ");
  li.innerHTML = `<time>${esc(new Date(event.at).toLocaleTimeString())}</time><span class="kind">${esc(event.kind)}</span>${esc(ids)} ${esc(event.message || "")}`;
  $("feed").prepend(li);
  while ($("feed").children.length > 200) $("feed").lastChild.remove();
}

// Server-Sent Events read with fetch, so the token travels in a header, not in the URL.
async function follow() {
  let last = null;
  for (;;) {
    if (!token) return;
    try {
      const headers = { Authorization: "Bearer " + token, Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = last;
      stream = new AbortController();
      const response = await fetch(api + "/events", { headers, signal: stream.signal });
      if (!response.ok) throw new Error("HTTP " + response.status);
      $("live").classList.add("on");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (!data) continue;
          if (id) last = id;
          const event = JSON.parse(data);
          showEvent(event);
          scheduleRefresh();
        }
      }
    } catch (e) {
      if (!token) return;
    }
    $("live").classList.remove("on");
    await new Promise((r) => setTimeout(r, 1000));
  }
}

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { loadShipments().catch(() => {}); loadWebhooks().catch(() => {}); loadAlerts().catch(() => {}); }, 300);
}

document.addEventListener("click", async (e) => {
  const t = e.target;
  if (t.dataset.retry) {
    if (t.disabled) return;
    const booked = t.dataset.status !== "ERROR_FROM_BODY";
    if (booked && !confirm("Segur/a? Un enviament al transportista ja ha sigut realitzat.")) return;
    // One press, one request: the button stays disabled once the retry is queued (the server
    // refuses a second one while the first is pending anyway).
    t.disabled = true;
    const response = await call(`/shipments/${t.dataset.retry}/retry${booked ? "?force=true" : ""}`, { method: "POST" });
    t.textContent = response.ok ? "Queued" : "Refused (" + response.status + ")";
  } else if (t.dataset.track) {
    const response = await call(`/shipments/${t.dataset.track}/track`, { method: "POST" });
    t.textContent = response.ok ? "Queued" : "Refused (" + response.status + ")";
  } else if (t.dataset.resolve) {
    t.disabled = true;
    const response = await call(`/alerts/${t.dataset.resolve}/resolve`, { method: "POST" });
    if (response.ok) loadAlerts().catch(() => {}); else t.textContent = "Refused (" + response.status + ")";
  } else if (t.closest("[data-mail]")) {
    e.preventDefault();
    await toggleMail(t.closest("[data-mail]").dataset.mail);
  } else if (t.dataset.webhookDetail) {
    e.preventDefault();
    await toggleWebhook(t.dataset.webhookDetail);
  } else if (t.dataset.label) {
    e.preventDefault();
    const response = await call(`/shipments/${t.dataset.label}/label`);
    if (response.ok) window.open(URL.createObjectURL(await response.blob()));
  }
});

async function signIn() {
  const probe = await fetch(api + "/shipments?limit=1", { headers: { Authorization: "Bearer " + token } });
  if (!probe.ok) { signOut(probe.status === 401 ? "The token was refused." : "HTTP " + probe.status); return; }
  admin = (await fetch(api + "/webhooks?limit=1", { headers: { Authorization: "Bearer " + token } })).ok;
  sessionStorage.setItem("lazona-token", token);
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  $("who").textContent = admin ? "admin" : "vendor";
  $("webhooks-panel").classList.toggle("hidden", !admin);
  await Promise.all([loadShipments(), loadWebhooks(), loadAlerts()]);
  // Alerts are raised by workers and checks that send no event: looked at every minute too.
  setInterval(() => { if (token) loadAlerts().catch(() => {}); }, 60000);
  follow();
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem("lazona-token");
  if (stream) stream.abort();
  $("app").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("notice").textContent = message || "";
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  signIn().catch((err) => signOut(String(err)));
});
$("logout").addEventListener("click", () => signOut());
$("reload-shipments").addEventListener("click", () => loadShipments());
if (token) signIn().catch(() => signOut());
