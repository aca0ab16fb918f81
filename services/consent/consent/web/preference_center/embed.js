// Embed the consent preference center in a host page, hand it the user's token without a
// URL, and apply the signals it reports (Google Consent Mode, an IAB __gpp CMP API stub).
//
//   <div id="privacy"></div>
//   <script src="https://consent.example.com/preference-center/embed.js"></script>
//   <script>
//     ConsentPreferenceCenter.mount(document.getElementById("privacy"), {
//       getToken: () => fetch("/my/consent-token").then((r) => r.text()),  // your backend
//       subjects: ["child-42"],   // optional: minors this user is the linked guardian of
//       gpp: true,                // optional: install a window.__gpp stub for ad tags
//     });
//   </script>
//
// The host's origin must be listed in CONSENT_PREFERENCE_CENTER_FRAME_ANCESTORS.
"use strict";

(function () {
  const script = document.currentScript;
  const base = new URL(".", script ? script.src : location.href);

  function installGpp(state) {
    const listeners = [];
    let nextId = 1;
    function pingData() {
      return {
        gppVersion: "1.1",
        cmpStatus: "loaded",
        cmpDisplayStatus: "hidden",
        signalStatus: state.gppString ? "ready" : "not ready",
        supportedAPIs: ["7:usnat", "8:usca"],
        cmpId: 0,
        sectionList: state.sid,
        applicableSections: state.sid.length ? state.sid : [-1],
        gppString: state.gppString,
        parsedSections: {},
      };
    }
    window.__gpp = function (command, callback, parameter) {
      if (typeof callback !== "function") return;
      if (command === "ping") return callback(pingData(), true);
      if (command === "addEventListener") {
        const listenerId = nextId++;
        listeners.push({ listenerId, callback });
        return callback({ eventName: "listenerRegistered", listenerId, data: true, pingData: pingData() }, true);
      }
      if (command === "removeEventListener") {
        const i = listeners.findIndex((l) => l.listenerId === parameter);
        if (i >= 0) listeners.splice(i, 1);
        return callback(i >= 0, true);
      }
      if (command === "hasSection") return callback(state.sid.includes(parameter === "usnat" ? 7 : parameter === "usca" ? 8 : -2), true);
      return callback(null, false);
    };
    return function update() {
      for (const l of listeners) {
        l.callback({ eventName: "signalStatus", listenerId: l.listenerId, data: "ready", pingData: pingData() }, true);
      }
    };
  }

  function mount(container, options) {
    const frame = document.createElement("iframe");
    frame.src = new URL("./", base).href;
    frame.title = options.title || "Privacy preferences";
    frame.style.width = "100%";
    frame.style.border = "0";
    frame.style.minHeight = options.minHeight || "60rem";
    const origin = new URL(frame.src).origin;
    const gppState = { gppString: "", sid: [] };
    const gppUpdated = options.gpp ? installGpp(gppState) : null;

    window.addEventListener("message", async (event) => {
      if (event.source !== frame.contentWindow || event.origin !== origin) return;
      const data = event.data || {};
      if (data.type === "consent-pc:ready") {
        const token = await options.getToken();
        frame.contentWindow.postMessage(
          { type: "consent-pc:token", token, subject_id: options.subjectId, subjects: options.subjects || [] },
          origin
        );
      } else if (data.type === "consent-pc:signals") {
        if (typeof window.gtag === "function") window.gtag("consent", "update", data.consent_mode);
        gppState.gppString = data.gpp;
        gppState.sid = data.gpp_sid || [];
        if (gppUpdated) gppUpdated();
        if (typeof options.onSignals === "function") options.onSignals(data);
      }
    });
    container.append(frame);
    return frame;
  }

  window.ConsentPreferenceCenter = { mount };
})();
