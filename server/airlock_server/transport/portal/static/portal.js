// The approval portal's only script: WebAuthn ceremonies and the live list of requests.
// The server writes the options (challenge included); the browser's own JSON helpers
// (parseCreationOptionsFromJSON, parseRequestOptionsFromJSON, toJSON) carry them both ways.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

function say(text) {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf() },
    body: body === undefined ? "{}" : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `refused (${response.status})`);
  return answer;
}

async function signIn() {
  say("Waiting for your passkey…");
  try {
    const options = await post("/sign-in/options");
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
    });
    const answer = await post("/sign-in", credential.toJSON());
    window.location.assign(answer.next);
  } catch (err) {
    say(`Sign-in failed: ${err.message}`);
  }
}

async function accept() {
  say("Creating your passkey…");
  const base = window.location.pathname;
  try {
    const options = await post(`${base}/options`);
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
    });
    const answer = await post(`${base}/accept`, credential.toJSON());
    window.location.assign(answer.next);
  } catch (err) {
    say(`The invitation was not accepted: ${err.message}`);
  }
}

async function vote(form, decision) {
  const session = form.dataset.session;
  const comment = form.elements.comment.value;
  say(`Signing your ${decision === "APPROVE" ? "approval" : "rejection"} with your passkey…`);
  try {
    const options = await post(`/requests/${session}/options`, { decision });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
    });
    await post(`/requests/${session}/vote`, {
      decision, comment, credential: credential.toJSON(),
      request_id: crypto.randomUUID(),
    });
    say(`Your vote (${decision}) was recorded.`);
    await refresh();
  } catch (err) {
    say(`Your vote was not recorded: ${err.message}`);
  }
}

async function refresh() {
  const list = document.getElementById("requests");
  if (!list) return;
  const response = await fetch(list.dataset.live, { credentials: "same-origin" });
  if (response.ok) list.innerHTML = await response.text();
}

function live() {
  const list = document.getElementById("requests");
  if (!list) return;
  const events = new EventSource(list.dataset.events);
  events.addEventListener("changed", () => { refresh(); });
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return;
  if (target.id === "sign-in") signIn();
  if (target.id === "accept") accept();
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.classList.contains("vote")) return;
  event.preventDefault();
  const decision = event.submitter ? event.submitter.value : "APPROVE";
  vote(form, decision);
});

document.addEventListener("DOMContentLoaded", live);
