// Reference preference center. Plain JavaScript, no framework, no inline script (strict CSP).
// The user token arrives from the host page, never in a URL:
//   1. postMessage: the page posts {type: "consent-pc:ready"} to its parent (embedded in an
//      iframe) or opener (opened with window.open); the host answers
//      {type: "consent-pc:token", token, subject_id?, subjects?} from an allowed origin
//      (CONSENT_PREFERENCE_CENTER_FRAME_ANCESTORS, or this page's own origin);
//   2. same-origin handoff: sessionStorage["consent-pc:token"] = JSON.stringify({token, ...})
//      set by a page on this origin before it navigates here.
// After each load or change the page posts {type: "consent-pc:signals", subject_id, gpp,
// gpp_sid, consent_mode} to the host (embed.js applies them to the host page).
"use strict";

(function () {
  const HANDOFF_KEY = "consent-pc:token";
  const CATEGORY_ORDER = ["marketing", "sharing", "analytics", "personalization", "cookies"];
  const SALE_SHARE = ["sale", "share"];
  const state = {
    strings: {},
    token: null,
    actor: null, // the token's subject: the person using the page
    subject: null, // whose choices are shown (the actor, or a child the actor is guardian of)
    subjects: [],
    hostWindow: null,
    hostOrigin: null,
    catalog: [],
    prefs: null,
    gpcHonored: false,
  };
  const $ = (id) => document.getElementById(id);

  function t(key, vars) {
    let value = key.split(".").reduce((o, k) => (o && o[k] !== undefined ? o[k] : undefined), state.strings);
    if (typeof value !== "string") value = key;
    return value.replace(/\{(\w+)\}/g, (_, name) => (vars && vars[name] !== undefined ? String(vars[name]) : ""));
  }

  function setStatus(message, isError) {
    const el = $("status");
    el.textContent = message || "";
    el.classList.toggle("error", Boolean(isError));
  }

  function jwtSubject(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
      return JSON.parse(atob(padded)).sub || null;
    } catch (e) {
      return null;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const problem = await response.json();
        detail = problem.detail || problem.title || detail;
      } catch (e) { /* not JSON */ }
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  const subjectPath = () => "/v1/subjects/" + encodeURIComponent(state.subject);

  // ---- token handover ------------------------------------------------------------------

  function hostCandidate() {
    if (window.parent && window.parent !== window) return window.parent;
    if (window.opener) return window.opener;
    return null;
  }

  function acceptHandoff(data, source, origin) {
    if (!data || typeof data.token !== "string" || !data.token) return false;
    state.token = data.token;
    state.actor = jwtSubject(data.token);
    state.subjects = Array.isArray(data.subjects) ? data.subjects.filter((s) => typeof s === "string") : [];
    state.subject = typeof data.subject_id === "string" ? data.subject_id : state.actor;
    state.hostWindow = source;
    state.hostOrigin = origin;
    return Boolean(state.actor);
  }

  function waitForToken(allowedOrigins) {
    return new Promise((resolve) => {
      let stored = null;
      try {
        stored = sessionStorage.getItem(HANDOFF_KEY);
      } catch (e) {
        stored = null; // storage is blocked in some third-party frames: postMessage only
      }
      if (stored) {
        try {
          if (acceptHandoff(JSON.parse(stored), null, null)) return resolve(true);
        } catch (e) { /* ignore a malformed handoff */ }
      }
      const host = hostCandidate();
      if (!host) return resolve(false);
      const allowed = new Set([location.origin, ...allowedOrigins]);
      window.addEventListener("message", (event) => {
        if (event.source !== host || !allowed.has(event.origin)) return;
        const data = event.data;
        if (!data || data.type !== "consent-pc:token") return;
        const first = state.token === null;
        if (acceptHandoff(data, event.source, event.origin)) {
          if (first) resolve(true);
          else load(); // a refreshed token, or another subject
        }
      });
      host.postMessage({ type: "consent-pc:ready" }, "*"); // carries nothing secret
    });
  }

  // ---- rendering -----------------------------------------------------------------------

  function applyStrings() {
    document.documentElement.lang = state.strings.lang || "en";
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  }

  function renderPicker() {
    const picker = $("picker");
    if (!state.subjects.length) {
      picker.hidden = true;
      return;
    }
    const select = $("subject-select");
    select.replaceChildren();
    const options = [[state.actor, t("acting_for_self")]].concat(
      state.subjects.map((s) => [s, t("acting_for_child", { subject: s })])
    );
    for (const [value, label] of options) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      option.selected = value === state.subject;
      select.append(option);
    }
    picker.hidden = false;
  }

  function viewMode() {
    const age = state.prefs.age_status;
    const self = state.subject === state.actor;
    return { self, child: age === "child", teen: age === "teen_opt_in" };
  }

  function renderNotices() {
    $("gpc-notice").hidden = !(state.gpcHonored && state.subject === state.actor);
    const mode = viewMode();
    let text = "";
    if (mode.child) text = mode.self ? t("child_notice_self") : t("child_notice_guardian");
    else if (mode.teen && mode.self) text = t("teen_notice");
    $("minor-notice-text").textContent = text;
    $("minor-notice").hidden = !text;
  }

  function renderPurposes() {
    const form = $("purposes");
    form.replaceChildren();
    const mode = viewMode();
    const byCategory = new Map();
    for (const p of state.catalog) {
      const category = CATEGORY_ORDER.includes(p.category) ? p.category : "other";
      if (!byCategory.has(category)) byCategory.set(category, []);
      byCategory.get(category).push(p);
    }
    for (const category of [...CATEGORY_ORDER, "other"]) {
      const purposes = byCategory.get(category);
      if (!purposes) continue;
      const fieldset = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = t("categories." + category);
      fieldset.append(legend);
      for (const p of purposes) fieldset.append(renderPurpose(p, mode));
      form.append(fieldset);
    }
    form.hidden = false;
  }

  function renderPurpose(purpose, mode) {
    const current = state.prefs.purposes[purpose.key] || { allowed: false, reason: "regime_default" };
    const id = "p-" + purpose.key;
    const row = document.createElement("div");
    row.className = "purpose";
    row.dataset.purpose = purpose.key;

    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = t("purposes." + purpose.key + ".title") !== "purposes." + purpose.key + ".title"
      ? t("purposes." + purpose.key + ".title") : purpose.title;
    const desc = document.createElement("p");
    desc.className = "desc";
    desc.id = id + "-desc";
    desc.textContent = purpose.description;
    const reason = document.createElement("p");
    reason.className = "reason";
    reason.id = id + "-reason";
    let reasonText = t("reasons." + current.reason);
    if (current.reason === "explicit_grant" && current.source === "guardian") reasonText = t("reasons.guardian_grant");

    const input = document.createElement("input");
    input.type = "checkbox";
    input.setAttribute("role", "switch");
    input.id = id;
    input.name = purpose.key;
    input.checked = Boolean(current.allowed);
    input.setAttribute("aria-describedby", desc.id + " " + reason.id);
    let locked = state.prefs.purposes && current.reason === "erased";
    if (mode.child && SALE_SHARE.includes(purpose.key)) locked = true; // never sold or shared
    if (mode.child && mode.self && !input.checked) {
      locked = true; // a child's own view cannot grant
      reasonText += " " + t("child_cannot_grant");
    }
    input.disabled = locked;
    reason.textContent = reasonText;
    const stateLabel = document.createElement("span");
    stateLabel.className = "state";
    stateLabel.setAttribute("aria-hidden", "true");
    stateLabel.textContent = input.checked ? t("state_allowed") : t("state_denied");
    input.addEventListener("change", () => change(purpose.key, input));

    const toggle = document.createElement("div");
    toggle.className = "toggle";
    toggle.append(input, stateLabel);
    row.append(label, toggle, desc, reason);
    return row;
  }

  function renderHistory(items, receiptsAvailable) {
    const list = $("history-list");
    list.replaceChildren();
    if (!items.length) {
      const li = document.createElement("li");
      li.textContent = t("history_empty");
      list.append(li);
    }
    for (const entry of items) {
      const li = document.createElement("li");
      li.dataset.sequence = String(entry.sequence);
      const time = document.createElement("time");
      time.dateTime = entry.occurred_at;
      time.textContent = new Date(entry.occurred_at).toLocaleString(state.strings.lang || undefined);
      const what = document.createElement("span");
      const typeLabel = (state.strings.history_type || {})[entry.type] || entry.type;
      const changes = (entry.changes || []).map((c) =>
        t("history_change", {
          purpose: c.purpose,
          from: t("statuses." + c.from),
          to: t("statuses." + c.to),
        })
      );
      what.textContent = [typeLabel, ...changes].join(" · ");
      const by = document.createElement("span");
      by.className = "by";
      const actor = entry.actor && entry.actor.type;
      by.textContent = " " + t("history_by", {
        actor: t("actors." + actor).startsWith("actors.") ? actor : t("actors." + actor),
        channel: entry.channel,
      });
      li.append(time, what, by);
      if (receiptsAvailable) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link";
        button.textContent = t("receipt");
        button.setAttribute("aria-label", t("receipt") + " #" + entry.sequence);
        button.addEventListener("click", () => downloadReceipt(entry.sequence));
        li.append(" ", button);
      }
      list.append(li);
    }
    $("history").hidden = false;
  }

  // ---- loading and actions ---------------------------------------------------------------

  async function loadHistory() {
    const page = await (await api("GET", subjectPath() + "/history?limit=20")).json();
    let receipts = false;
    if (page.items.length) {
      try {
        await api("GET", subjectPath() + "/receipts/" + page.items[0].sequence);
        receipts = true;
      } catch (e) {
        receipts = false; // receipts are not available on this server, or not for this entry
      }
    }
    renderHistory(page.items, receipts);
  }

  async function loadErasure() {
    const el = $("erasure-status");
    try {
      const erasure = await (await api("GET", subjectPath() + "/erasure")).json();
      el.textContent = t("erase_status", {
        status: t("erasure_status." + erasure.status),
        due: new Date(erasure.due_at).toLocaleDateString(state.strings.lang || undefined),
      });
    } catch (e) {
      el.textContent = "";
    }
    $("rights").hidden = false;
  }

  async function publishSignals() {
    let signals;
    try {
      signals = await (await api("GET", subjectPath() + "/signals")).json();
    } catch (e) {
      return;
    }
    const message = { type: "consent-pc:signals", subject_id: state.subject, ...signals };
    if (typeof window.gtag === "function") window.gtag("consent", "update", signals.consent_mode);
    if (state.hostWindow && state.hostOrigin) state.hostWindow.postMessage(message, state.hostOrigin);
    document.dispatchEvent(new CustomEvent("consent-pc:signals", { detail: message }));
  }

  async function load() {
    setStatus(t("loading"));
    try {
      if (!state.catalog.length) {
        state.catalog = (await (await fetch("/v1/purposes")).json()).items;
      }
      const response = await api("GET", subjectPath() + "/preferences");
      state.prefs = await response.json();
      if (response.headers.get("Sec-GPC-Honored") === "1") state.gpcHonored = true;
      renderPicker();
      renderNotices();
      renderPurposes();
      await Promise.all([loadHistory(), loadErasure(), publishSignals()]);
      setStatus("");
      document.body.dataset.ready = "true";
    } catch (e) {
      setStatus(t("load_failed", { detail: e.message }), true);
    }
  }

  async function change(purpose, input) {
    const wanted = input.checked;
    input.disabled = true;
    setStatus(t("saving"));
    try {
      const response = await api("PATCH", subjectPath() + "/preferences", {
        purposes: { [purpose]: wanted ? "granted" : "denied" },
      });
      state.prefs = await response.json();
      if (response.headers.get("Sec-GPC-Honored") === "1") state.gpcHonored = true;
      renderNotices();
      renderPurposes();
      $("p-" + purpose).focus();
      setStatus(t("saved"));
      await Promise.all([loadHistory(), publishSignals()]);
    } catch (e) {
      input.checked = !wanted;
      input.disabled = false;
      input.focus();
      setStatus(t("save_failed", { detail: e.message }), true);
    }
  }

  function saveBlob(blob, file) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = file;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function exportData() {
    try {
      const blob = await (await api("GET", subjectPath() + "/export")).blob();
      const file = "consent-export-" + state.subject + ".json";
      saveBlob(blob, file);
      setStatus(t("export_done", { file }));
    } catch (e) {
      setStatus(t("load_failed", { detail: e.message }), true);
    }
  }

  async function downloadReceipt(sequence) {
    try {
      const blob = await (await api("GET", subjectPath() + "/receipts/" + sequence)).blob();
      saveBlob(blob, "consent-receipt-" + state.subject + "-" + sequence + ".jws");
    } catch (e) {
      setStatus(t("receipt_unavailable"), true);
    }
  }

  async function confirmErasure() {
    const dialog = $("erase-dialog");
    dialog.close();
    try {
      const accepted = await (await api("POST", subjectPath() + "/erasure")).json();
      const due = new Date(accepted.due_at).toLocaleDateString(state.strings.lang || undefined);
      setStatus(t("erase_requested", { due }));
      await load();
      setStatus(t("erase_requested", { due }));
    } catch (e) {
      setStatus(t("save_failed", { detail: e.message }), true);
    }
  }

  async function main() {
    const [strings, config] = await Promise.all([
      fetch("strings.en.json").then((r) => r.json()),
      fetch("config.json").then((r) => r.json()),
    ]);
    state.strings = strings;
    applyStrings();
    $("export").addEventListener("click", exportData);
    $("erase").addEventListener("click", () => $("erase-dialog").showModal());
    $("erase-cancel").addEventListener("click", () => $("erase-dialog").close());
    $("erase-confirm").addEventListener("click", confirmErasure);
    $("subject-select").addEventListener("change", (event) => {
      state.subject = event.target.value;
      state.prefs = null;
      load();
    });
    setStatus(t("loading"));
    if (!(await waitForToken(config.allowed_origins || []))) {
      setStatus(t("signed_out"));
      document.body.dataset.ready = "signed-out";
      return;
    }
    await load();
  }

  main().catch((e) => setStatus(t("load_failed", { detail: e.message }), true));
})();
