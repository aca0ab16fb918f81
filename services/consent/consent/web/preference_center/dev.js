// Dev-only sign-in helper (served only under consentctl dev).
"use strict";
document.getElementById("dev-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const subject = document.getElementById("subject").value.trim();
  const jurisdiction = document.getElementById("jurisdiction").value.trim();
  const subjects = document.getElementById("subjects").value.split(",").map((s) => s.trim()).filter(Boolean);
  const status = document.getElementById("dev-status");
  try {
    const r = await fetch("dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ subject_id: subject }),
    });
    if (!r.ok) throw new Error("token: HTTP " + r.status);
    const { token } = await r.json();
    if (jurisdiction) {
      const put = await fetch("/v1/subjects/" + encodeURIComponent(subject), {
        method: "PUT",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify({ jurisdiction }),
      });
      if (!put.ok && put.status !== 403) throw new Error("profile: HTTP " + put.status);
    }
    sessionStorage.setItem("consent-pc:token", JSON.stringify({ token, subjects }));
    location.assign("./");
  } catch (e) {
    status.textContent = String(e.message || e);
  }
});
