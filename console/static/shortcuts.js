// Keyboard shortcuts for the queue and the case page. The list people see is in
// base.html ("Keyboard shortcuts", opened with ?), translated with the rest of the page.
// Nothing here sends or approves anything: a key moves the focus, opens a page or presses
// the Claim button; replies are still sent with their own button.
// Keys are ignored while typing in a field (Escape leaves the field) or with Ctrl/Alt/Meta.
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && !/^(checkbox|radio|button|submit|reset)$/.test(target.type));
  }

  // The queue's case links, in the order shown (live.js may have replaced them).
  function caseLinks() {
    return Array.prototype.slice.call(
      document.querySelectorAll('#queue-live a[data-focus-key^="open-"]'));
  }

  function move(step) {
    var links = caseLinks();
    if (!links.length) {
      return false;
    }
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1)
      : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
    return true;
  }

  function claimFocused() {
    var active = document.activeElement;
    var row = active && active.closest ? active.closest("tr[data-case-id]") : null;
    var button = row ? row.querySelector('form[action$="/claim"] button') : null;
    if (button) {
      button.click();
      return true;
    }
    return false;
  }

  function focusField(selector) {
    var field = document.querySelector(selector);
    if (!field) {
      return false;
    }
    field.focus();
    if (field.tagName.toLowerCase() === "textarea") {
      // After a prefilled answer, where one goes on writing.
      field.selectionStart = field.selectionEnd = field.value.length;
    }
    if (field.scrollIntoView) {
      field.scrollIntoView({ block: "center" });
    }
    return true;
  }

  function useSuggestion(number) {
    var links = document.querySelectorAll(".suggestions .suggestion a.use");
    if (number > links.length) {
      return false;
    }
    window.location.assign(links[number - 1].href);
    return true;
  }

  function toggleHelp() {
    var help = document.getElementById("shortcuts");
    if (!help) {
      return false;
    }
    help.open = !help.open;
    if (help.open) {
      help.querySelector("summary").focus();
    }
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey || event.defaultPrevented) {
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    var done = false;
    switch (event.key) {
      case "?":
        done = toggleHelp();
        break;
      case "j":
        done = move(1);
        break;
      case "k":
        done = move(-1);
        break;
      case "c":
        done = claimFocused();
        break;
      case "/":
        done = focusField("form.filters select");
        break;
      case "r":
        done = focusField("#reply-text");
        break;
      case "n":
        done = focusField("#note-text");
        break;
      case "d":
        done = focusField('.dismiss-form input[name="reason"]');
        break;
      case "g":
        window.location.assign("/queue");
        done = true;
        break;
      default:
        if (/^[1-9]$/.test(event.key)) {
          done = useSuggestion(Number(event.key));
        }
    }
    if (done) {
      event.preventDefault();
    }
  });
})();
