// The console's live parts, without a framework or a build step (the CSP allows only
// scripts from this site). Listens to /api/v1/events:
// - on the queue page, fetches the list again (server-rendered, /queue/rows) when a case
//   changes, so new flagged messages appear without a reload;
// - for someone on duty, shows a browser notification for an urgent case.
// Everything here is an enhancement: without it the pages work with reloads.
(function () {
  "use strict";
  var body = document.body;
  if (!body || !body.dataset.live || !window.EventSource) {
    return;
  }
  var live = document.getElementById("queue-live");
  var status = document.getElementById("queue-status");
  var pending = null;
  var running = false;
  var again = false;

  function focusKey() {
    var active = document.activeElement;
    return active && live.contains(active) ? active.getAttribute("data-focus-key") : null;
  }

  function refresh() {
    pending = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    fetch(live.getAttribute("data-rows-url"), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("queue refresh: HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var key = focusKey();
        live.innerHTML = html;
        if (key) {
          var target = live.querySelector('[data-focus-key="' + key + '"]');
          if (target) {
            target.focus();
          }
        }
        if (status) {
          status.textContent = status.getAttribute("data-updated-text");
        }
        live.dispatchEvent(new CustomEvent("queue:updated", { bubbles: true }));
      })
      .catch(function (error) {
        console.warn(error);
      })
      .then(function () {
        running = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function notify(event) {
    if (!("Notification" in window) || Notification.permission !== "granted") {
      return;
    }
    var note = new Notification(body.getAttribute("data-alert-title") + " #" + event.case, {
      body: body.getAttribute("data-alert-body"),
      tag: "peerdesk-case-" + event.case,
      requireInteraction: true,
    });
    note.onclick = function () {
      window.focus();
      window.location.href = "/cases/" + event.case;
    };
  }

  // An expert answered a question this person asked: say so on whatever page they are
  // on (a link to the case), and with a browser notification when allowed.
  function answered(event) {
    var text = body.getAttribute("data-answer-text").replace("%(case)s", "#" + event.case);
    var note = document.getElementById("expert-answer");
    if (!note) {
      note = document.createElement("p");
      note.id = "expert-answer";
      note.className = "flash flash-ok";
      note.setAttribute("role", "status");
      document.querySelector("main").prepend(note);
    }
    var link = document.createElement("a");
    link.href = "/cases/" + event.case + "#notes";
    link.textContent = text;
    note.replaceChildren(link);
    if ("Notification" in window && Notification.permission === "granted") {
      var shown = new Notification(text, { tag: "peerdesk-answer-" + event.case });
      shown.onclick = function () {
        window.focus();
        window.location.href = link.href;
      };
    }
  }

  var source = new EventSource(body.dataset.live);
  // Shown as an attribute (for styling, and for the browser tests to wait on).
  source.addEventListener("open", function () {
    body.setAttribute("data-live-state", "open");
  });
  source.addEventListener("error", function () {
    body.setAttribute("data-live-state", "reconnecting");
  });
  source.addEventListener("case", function (message) {
    var event = JSON.parse(message.data);
    if (live && pending === null) {
      // Events come in bursts (a message, its case, its claim): one fetch for a burst.
      pending = window.setTimeout(refresh, 150);
    }
    var alerting = event.kind === "alert" || (event.kind === "opened" && event.urgent);
    if (alerting && body.dataset.onDuty === "true") {
      notify(event);
    }
    if (event.kind === "expert_answer" && String(event.user) === body.dataset.userId) {
      answered(event);
    }
  });
  window.addEventListener("pagehide", function () {
    source.close();
  });

  // Going on duty asks for permission to notify (a browser asks only after a click).
  var ask = document.querySelector("[data-ask-notifications]");
  if (ask && "Notification" in window) {
    ask.addEventListener("click", function () {
      if (Notification.permission === "default") {
        Notification.requestPermission();
      }
    });
  }
})();
